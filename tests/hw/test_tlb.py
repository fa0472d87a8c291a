"""The TLB of each logical processor (epcsim.hw.tlb, encls.enclave_access).

The EPCM is checked, and the PTE's accessed bit set, by the page walk that fills a TLB
entry; a cached translation is used without either until EEXIT or AEX flushes the LP's
enclave entries (Intel SDM vol. 3D; Costan and Devadas, "Intel SGX Explained", 5.1).
"""

from __future__ import annotations

import pytest
from hwenv import BASE, OFF_CODE, OFF_DATA0, OFF_DATA1, OFF_SSA, Enclave, Env

from epcsim.hw import encls as L
from epcsim.hw.cpu import PageFault, Processor
from epcsim.hw.memory import AddressSpace
from epcsim.hw.tlb import tlb_entries

HIT, WALKED = 0, L.WALKED


def _env(entries: int, ways: int) -> tuple[Env, Enclave]:
    env = Env(tlb_entries=entries, tlb_ways=ways)
    encl = env.enclave()
    env.enter(encl, 0)
    return env, encl


def _access(env: Env, encl: Enclave, off: int, write: bool = False, lp: int = 0) -> int:
    cpu = env.cpu
    page = cpu.page_index(encl.phys(off))
    return int(L.enclave_access(cpu.st, lp, page, encl.lin(off), write, False))


def test_a_hit_skips_the_walk() -> None:
    env, encl = _env(16, 4)
    assert _access(env, encl, OFF_DATA0) == WALKED
    assert _access(env, encl, OFF_DATA0) == HIT
    assert _access(env, encl, OFF_DATA1) == WALKED
    assert _access(env, encl, OFF_DATA0) == HIT
    assert tlb_entries(env.cpu.st, 0) == 2


def test_aex_and_eexit_flush_the_tlb() -> None:
    env, encl = _env(16, 4)
    cpu = env.cpu
    assert _access(env, encl, OFF_DATA0) == WALKED
    assert _access(env, encl, OFF_DATA1) == WALKED
    cpu.aex(0)
    assert tlb_entries(cpu.st, 0) == 0
    assert cpu.eresume(0, encl.tcs) == 0
    assert _access(env, encl, OFF_DATA0) == WALKED
    assert _access(env, encl, OFF_DATA0) == HIT
    assert cpu.eexit(0) == 0
    assert tlb_entries(cpu.st, 0) == 0
    env.enter(encl, 0)
    assert _access(env, encl, OFF_DATA0) == WALKED


def test_each_lp_has_its_own_tlb() -> None:
    env, encl = _env(16, 4)
    other = env.enclave(base=BASE + 0x100000)
    env.enter(other, 1)
    assert _access(env, encl, OFF_DATA0) == WALKED
    assert _access(env, other, OFF_DATA0, lp=1) == WALKED       # same offset, another LP
    assert _access(env, other, OFF_DATA0, lp=1) == HIT
    env.cpu.aex(1)
    assert _access(env, encl, OFF_DATA0) == HIT                 # LP 1's flush is its own
    assert tlb_entries(env.cpu.st, 1) == 0


def test_capacity_evicts_round_robin_within_a_set() -> None:
    # 4 sets: pages 1 (SSA frame 0) and 5 (data page 0) share set 1.
    env, encl = _env(4, 1)
    assert _access(env, encl, OFF_SSA) == WALKED
    assert _access(env, encl, OFF_DATA0) == WALKED     # evicts the SSA frame's entry
    assert _access(env, encl, OFF_SSA) == WALKED
    assert _access(env, encl, OFF_DATA1) == WALKED     # set 2: no conflict
    assert _access(env, encl, OFF_SSA) == HIT
    # Two ways hold both.
    env, encl = _env(8, 2)
    assert _access(env, encl, OFF_SSA) == WALKED
    assert _access(env, encl, OFF_DATA0) == WALKED
    assert _access(env, encl, OFF_SSA) == HIT
    assert _access(env, encl, OFF_DATA0) == HIT


def test_a_write_after_a_read_walks_once() -> None:
    env, encl = _env(16, 4)
    assert _access(env, encl, OFF_DATA0) == WALKED
    assert _access(env, encl, OFF_DATA0, write=True) == WALKED   # the dirty bit
    assert _access(env, encl, OFF_DATA0, write=True) == HIT
    assert _access(env, encl, OFF_DATA0) == HIT
    assert tlb_entries(env.cpu.st, 0) == 1                       # upgraded in place


def test_a_failed_walk_caches_nothing() -> None:
    env, encl = _env(16, 4)
    assert _access(env, encl, OFF_CODE) == WALKED                # RX: a read passes
    assert _access(env, encl, OFF_CODE, write=True) > 0          # no W in the EPCM
    assert _access(env, encl, OFF_CODE, write=True) > 0          # still walks, still fails
    assert _access(env, encl, OFF_CODE) == HIT


def test_an_entry_made_before_eblock_serves_until_a_flush() -> None:
    env, encl = _env(16, 4)
    cpu = env.cpu
    assert _access(env, encl, OFF_DATA0, write=True) == WALKED
    assert cpu.eblock(encl.phys(OFF_DATA0)) == 0
    # The EPCM now refuses a fill (BLOCKED), but the cached translation is not checked.
    assert _access(env, encl, OFF_DATA0, write=True) == HIT
    assert _access(env, encl, OFF_DATA1) == WALKED               # other pages still fill
    cpu.aex(0)
    assert cpu.eresume(0, encl.tcs) == 0
    assert _access(env, encl, OFF_DATA0) > 0                     # #PF from the EPCM check


def test_a_wrapping_flush_generation_brings_no_entry_back() -> None:
    # A flush starts a new generation of the LP's TLB; 256 of them wrap the byte.
    env, encl = _env(16, 4)
    cpu = env.cpu
    assert _access(env, encl, OFF_DATA0) == WALKED
    for _ in range(300):
        cpu.aex(0)
        assert cpu.eresume(0, encl.tcs) == 0
        assert _access(env, encl, OFF_DATA1) == WALKED      # another set, so a flush counts
    assert _access(env, encl, OFF_DATA1) == HIT
    assert _access(env, encl, OFF_DATA0) == WALKED
    assert tlb_entries(cpu.st, 0) == 2


def test_without_a_tlb_every_access_walks() -> None:
    env, encl = _env(0, 1)
    assert env.cpu.tlb_entries == 0
    for _ in range(3):
        assert _access(env, encl, OFF_DATA0) == WALKED


class _Recording(AddressSpace):
    """Page tables whose walker records where it set an accessed bit."""

    def __init__(self, base: AddressSpace) -> None:
        super().__init__()
        self._ptes = dict(base._ptes)
        self.walked: list[int] = []

    def touch(self, linaddr: int, write: bool) -> None:
        self.walked.append(linaddr >> 12)


@pytest.mark.parametrize("entries", [0, 16])
def test_the_python_api_sets_accessed_bits_on_walks_only(entries: int) -> None:
    env = Env(tlb_entries=entries, tlb_ways=4)
    encl = env.enclave()
    rec = encl.aspace = _Recording(encl.aspace)
    env.enter(encl, 0)
    cpu = env.cpu
    for _ in range(3):
        cpu.enclave_read(0, encl.lin(OFF_DATA0))
    cpu.enclave_write(0, encl.lin(OFF_DATA0), b"x")
    page = encl.lin(OFF_DATA0) >> 12
    tcs = encl.tcs >> 12
    # EENTER walks its TCS operand. A read walks, then (with a TLB) hits; the write walks
    # again for the dirty bit.
    assert rec.walked == [tcs] + ([page] * 4 if entries == 0 else [page, page])
    # A fault leaves through an AEX, which flushes: ERESUME walks the TCS, the next access
    # walks.
    with pytest.raises(PageFault):
        cpu.enclave_read(0, encl.lin(0x1F000))
    assert cpu.eresume(0, encl.tcs) == 0
    cpu.enclave_read(0, encl.lin(OFF_DATA0))
    assert rec.walked[-2:] == [tcs, page] and len(rec.walked) == (7 if entries == 0 else 5)


@pytest.mark.parametrize(("entries", "ways"), [(100, 12), (1536, 7), (8, 4), (1 << 17, 16),
                                               (1024, 256)])
def test_a_tlb_the_model_cannot_hold_is_refused(entries: int, ways: int) -> None:
    with pytest.raises(ValueError, match="TLB"):
        Processor(epc_size=1 << 20, tlb_entries=entries, tlb_ways=ways)
