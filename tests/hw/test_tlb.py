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


# --------------------------------------------------------------------------- the way hint
# A lookup tries the way the page's last fill went to (its EPCM entry's ``tlbw``) and, while
# the LP is alone in its enclave, takes a miss there as a miss. Against a TLB that looks at
# every way (below), over random accesses of LPs that share an enclave, enter and leave it.

_WAYS, _SETS = 2, 4
_DATA_PAGES = 12


class _ScanTlb:
    """The TLB of one LP as the model defines it, looking at every way."""

    def __init__(self) -> None:
        self.flush()

    def flush(self) -> None:
        self.sets: list[list[tuple[int, bool]]] = [[] for _ in range(_SETS)]
        self.count = [0] * _SETS

    def access(self, off: int, write: bool) -> int:
        s, tag = off % _SETS, off // _SETS
        ways = self.sets[s]
        for w, (t, writable) in enumerate(ways):
            if t == tag:
                if writable or not write:
                    return HIT
                ways[w] = (tag, True)        # the dirty bit: walks, upgraded in place
                return WALKED
        c = self.count[s]
        if c < _WAYS:
            ways.append((tag, write))
            self.count[s] = c + 1
        else:
            ways[c - _WAYS] = (tag, write)
            self.count[s] = c + 1 if c + 1 < 2 * _WAYS else _WAYS
        return WALKED


def _shared_enclave(env: Env) -> tuple[Enclave, list[int]]:
    """An enclave of two threads (two TCSs) and ``_DATA_PAGES`` RW pages from offset 0x4000."""
    from epcsim.arch import PageType
    from epcsim.hw.baremetal import Segment, tcs_image

    segs = [Segment(0x0000, tcs_image(ossa=0x1000, nssa=1), PageType.TCS),
            Segment(0x1000, b""),
            Segment(0x2000, tcs_image(ossa=0x3000, nssa=1), PageType.TCS),
            Segment(0x3000, b"")]
    segs += [Segment(0x4000 + i * 0x1000, bytes([i + 1])) for i in range(_DATA_PAGES)]
    built = env.bm.build(segs, base=BASE, size=0x20000)
    aspace = AddressSpace()
    for lin, phys in built.pages.items():
        aspace.map(lin, phys, 7)
    return Enclave(built, aspace, 1, 0), [BASE, BASE + 0x2000]


@pytest.mark.parametrize("seed", range(6))
def test_the_way_hint_answers_as_a_lookup_of_every_way(seed: int) -> None:
    import random

    rng = random.Random(seed)
    env = Env(tlb_entries=_WAYS * _SETS, tlb_ways=_WAYS, n_lps=3)
    cpu = env.cpu
    encl, tcss = _shared_enclave(env)
    ref = [_ScanTlb() for _ in range(3)]
    where = [-1, -1, -1]            # the TCS each LP runs on, -1 outside
    hits = shared_hits = 0
    for _ in range(600):
        lp = rng.randrange(3)
        if where[lp] < 0:
            free = [i for i in range(2) if i not in where]
            if free:
                where[lp] = rng.choice(free)
                cpu.aspace[lp] = encl.aspace
                assert cpu.eenter(lp, tcss[where[lp]]) == 0
            continue
        r = rng.random()
        if r < 0.04:
            cpu.eexit(lp)
            where[lp] = -1
            ref[lp].flush()
        elif r < 0.08:
            cpu.aex(lp)
            ref[lp].flush()
            assert cpu.eresume(lp, tcss[where[lp]]) == 0
        else:
            i = rng.randrange(_DATA_PAGES)
            off = 0x4000 + i * 0x1000
            write = rng.random() < 0.3
            got = _access(env, encl, off, write, lp)
            assert got == ref[lp].access(off >> 12, write), (seed, lp, off, write)
            hits += got == HIT
            shared_hits += got == HIT and sum(w >= 0 for w in where) == 2
    assert hits > 50 and shared_hits > 20      # the sequences reach both cases
