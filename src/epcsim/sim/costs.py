"""The cost model: cycles per leaf and per event, and platform presets.

No published source gives per-leaf cycle counts (the SDM gives none): the only citable
per-fault figure is VAULT's "about 40K cycles" per page swap on SGX1. The per-leaf constants
below are the model's defaults, estimates chosen so that one demand fault with an eviction
(AEX, #PF, EBLOCK, ETRACK, IPI, EWB, ELDU, ERESUME) costs about 40K cycles; each says so.
Every constant can be overridden in a scenario (``[platform.costs]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Cost:
    cycles: int
    source: str


# Indices of the cost vector compiled code uses.
K_REQUEST, K_AEX, K_ERESUME, K_PF, K_EBLOCK, K_ETRACK, K_EWB, K_ELDU, K_EAUG, K_EACCEPT, \
    K_IPI, K_EPA, K_EREMOVE, K_FAULT_SW, K_EENTER, K_VMEXIT, K_EPT, K_KICK, K_PAGE_WALK = range(19)
K_LEN = 19

ESTIMATE = "estimate (the model's defaults), tuned to VAULT's ~40K cycles per swap"


@dataclass(frozen=True)
class CostModel:
    """Cycles of each event. ``request`` is the enclave's own work per traced access."""

    request: Cost = Cost(200, "model parameter: work per traced page access, not a "
                              "measurement; slowdowns scale with it")
    aex: Cost = Cost(3000, ESTIMATE + " (AEX+ERESUME 5-7k)")
    eresume: Cost = Cost(3000, ESTIMATE + " (AEX+ERESUME 5-7k)")
    page_fault: Cost = Cost(2000, ESTIMATE + " (kernel #PF delivery and handler entry)")
    eblock: Cost = Cost(1500, ESTIMATE + " (EBLOCK 1-2k)")
    etrack: Cost = Cost(1500, ESTIMATE + " (ETRACK 1-2k)")
    ewb: Cost = Cost(11000, ESTIMATE + " (EWB 10-12k)")
    eldu: Cost = Cost(9000, ESTIMATE + " (ELDU 8-10k)")
    eaug: Cost = Cost(3000, ESTIMATE + " (like EADD without the copy)")
    eaccept: Cost = Cost(2000, ESTIMATE)
    ipi: Cost = Cost(3500, ESTIMATE + " (IPI round trip 2-5k)")
    epa: Cost = Cost(2000, ESTIMATE)
    eremove: Cost = Cost(1500, ESTIMATE)
    fault_software: Cost = Cost(2000, ESTIMATE + " (VA slot, backing store, PTE update)")
    eenter_eexit: Cost = Cost(3500, ESTIMATE + " (EENTER+EEXIT 3-4k; HotCalls: SDK "
                                               "ECALL 8.2-17k)")
    vm_exit: Cost = Cost(1500, "estimate: VM exit and re-entry on a modern VMX part")
    ept_fault: Cost = Cost(2000, "estimate: EPT violation handling in KVM")
    kick: Cost = Cost(3500, "estimate: IPI to a vCPU, forcing AEX and a VM exit")
    page_walk: Cost = Cost(40, "estimate: a TLB miss's walk of four levels whose entries "
                               "are in the caches, with the EPCM check at the fill; charged "
                               "only when the platform has a TLB (tlb_entries > 0)")

    def vector(self) -> np.ndarray:
        order = ("request", "aex", "eresume", "page_fault", "eblock", "etrack", "ewb", "eldu",
                 "eaug", "eaccept", "ipi", "epa", "eremove", "fault_software", "eenter_eexit",
                 "vm_exit", "ept_fault", "kick", "page_walk")
        return np.array([getattr(self, n).cycles for n in order], dtype=np.int64)

    def with_cycles(self, **cycles: int) -> CostModel:
        """A copy with some constants overridden (their source becomes 'scenario')."""
        known = {f.name for f in fields(self)}
        for name in cycles:
            if name not in known:
                raise ValueError(f"unknown cost {name!r}; known: {', '.join(sorted(known))}")
        return replace(self, **{n: Cost(int(c), "scenario") for n, c in cycles.items()})

    def describe(self) -> dict[str, dict[str, object]]:
        return {k: {"cycles": v["cycles"], "source": v["source"]}
                for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Platform:
    """An SGX platform: EPC size and layout, clock, cost model, and the second-level TLB
    of each logical processor (``tlb_entries`` in sets of ``tlb_ways``; 0: every access
    walks and marks its page accessed)."""

    name: str
    epc_bytes: int
    nodes: int
    ghz: float
    mee: bool                      # MEE integrity tree (pre-Ice Lake) or TME-MK
    source: str
    costs: CostModel = field(default_factory=CostModel)
    tlb_entries: int = 0
    tlb_ways: int = 1
    tlb_source: str = "no TLB modelled"

    @property
    def epc_pages(self) -> int:
        return self.epc_bytes // 4096


# The STLB of the cores: the TLB whose miss walks the page tables (and sets accessed bits).
SKYLAKE_STLB = ("STLB of the Skylake core (SGX1 client and Xeon E parts are Skylake to Coffee "
                "Lake cores): 1536 entries for 4 KiB and 2 MiB pages, 12-way (Intel 64 and "
                "IA-32 Architectures Optimization Reference Manual, 248966-045, Table 2-15)")
SUNNY_COVE_STLB = ("STLB of the Sunny Cove core: two second-level TLBs of 8 ways x 128 sets "
                   "hold 4 KiB translations (CPUID leaf 18H of an Ice Lake client part), "
                   "modelled as one of 2048 entries, 16-way; the server core is taken to "
                   "be the same (estimate)")

PRESETS: dict[str, Platform] = {
    "client-sgx1": Platform(
        "client-sgx1", 0x05D80000, 1, 3.0, True,
        "128 MiB PRM; usable EPC section 93.5 MiB (CPUID size 0x05D80000 observed), "
        "clock 3.0 GHz is an estimate", tlb_entries=1536, tlb_ways=12,
        tlb_source=SKYLAKE_STLB),
    "server-sgx1": Platform(
        "server-sgx1", 187 * MiB, 1, 3.0, True,
        "256 MiB PRM (Xeon E 'Mehlow-R', Avalon FAQ); usable EPC derived with the client "
        "part's ratio (93.5/128 of the PRM), about 187 MiB; clock is an estimate",
        tlb_entries=1536, tlb_ways=12, tlb_source=SKYLAKE_STLB),
    "xeon-icx": Platform(
        "xeon-icx", 64 * GiB, 2, 2.6, False,
        "3rd-gen Xeon Scalable (Ice Lake-SP): up to 512 GiB EPC per socket (Intel KB "
        "000059614); the preset has 2 sockets x 32 GiB, resize with epc_size; TME-MK, "
        "no integrity tree; clock is an estimate", tlb_entries=2048, tlb_ways=16,
        tlb_source=SUNNY_COVE_STLB),
}


def with_tlb(p: Platform, entries: int | None, ways: int | None = None) -> Platform:
    """``p`` with its TLB resized (None keeps its value); ValueError for a TLB the model
    cannot hold. 0 entries: no TLB, every access walks."""
    from epcsim.hw.epc import check_tlb

    if entries is None and ways is None:
        return p
    e = p.tlb_entries if entries is None else entries
    w = p.tlb_ways if ways is None else ways
    check_tlb(e, w)
    return replace(p, tlb_entries=e, tlb_ways=w, tlb_source="scenario" if e else
                   "no TLB modelled (every access walks)")


def preset(name: str) -> Platform:
    """A preset by name; ``host`` is this machine's EPC (:func:`epcsim.host.host_platform`),
    a ValueError saying so on a machine without SGX."""
    if name == "host":
        from epcsim.host import host_platform

        return host_platform()  # type: ignore[no-any-return]
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown platform {name!r}; choose one of "
                         f"{', '.join(PRESETS)}, host") from None
