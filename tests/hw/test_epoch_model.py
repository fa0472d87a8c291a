"""The ETRACK epoch model (Intel SDM vol. 3D): when EWB may write a blocked page back.

The scripted tests walk the cases the reference spells out; the property test drives random
sequences of entries, exits, EBLOCK, ETRACK and EWB on several logical processors and checks
every result against an oracle written from the definition, not from the model's counters:

    a blocked page is tracked once some successful ETRACK after its EBLOCK has seen every
    logical processor that was inside the enclave at that moment leave it since.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hwenv import BASE, OFF_CODE, OFF_DATA0, OFF_DATA1, Env, unchanged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epcsim.arch import PageType, SgxReturn
from epcsim.hw.baremetal import Segment, tcs_image
from epcsim.hw.cpu import PageFault
from epcsim.hw.encls import CTX_GUEST
from epcsim.hw.epc import SECS_LOCK_EPOCH
from epcsim.hw.memory import AddressSpace

NOT_TRACKED = SgxReturn.SGX_NOT_TRACKED


def test_ewb_three_stage_tracking(env, encl):
    """Linux's reclaimer: EWB, then ETRACK + EWB, then IPI (AEX) + EWB."""
    page, va = encl.phys(OFF_DATA0), env.va()
    env.enter(encl)                                       # a thread is running inside
    assert env.cpu.eblock(page) == 0
    rc, _ = env.ewb(page, va)
    assert rc == NOT_TRACKED                              # stage 1: no ETRACK yet
    assert env.cpu.etrack(encl.secs) == 0
    rc, _ = env.ewb(page, va)
    assert rc == NOT_TRACKED                              # stage 2: the thread is still in
    env.cpu.aex(0)                                        # the IPI interrupts it
    rc, _ = env.ewb(page, va)
    assert rc == SgxReturn.SGX_SUCCESS                    # stage 3
    assert not env.epcm(page)["valid"]


def test_ewb_after_etrack_with_no_thread_inside(env, encl):
    page, va = encl.phys(OFF_DATA0), env.va()
    assert env.cpu.eblock(page) == 0
    assert env.cpu.etrack(encl.secs) == 0
    assert env.ewb(page, va)[0] == 0


def test_etrack_twice_with_thread_inside(env, encl):
    env.enter(encl)
    assert env.cpu.etrack(encl.secs) == 0
    assert env.cpu.etrack(encl.secs) == SgxReturn.SGX_PREV_TRK_INCMPL
    env.cpu.eexit(0)                                       # EEXIT completes it as AEX does
    assert env.cpu.etrack(encl.secs) == 0


def test_lp_entering_after_etrack_does_not_block_ewb(env, encl):
    page, va = encl.phys(OFF_DATA0), env.va()
    assert env.cpu.eblock(page) == 0
    assert env.cpu.etrack(encl.secs) == 0
    env.enter(encl, lp=1)                                 # joins the new epoch
    assert env.ewb(page, va)[0] == SgxReturn.SGX_SUCCESS
    assert env.cpu.etrack(encl.secs) == 0                 # and it is not outstanding


def test_lp_resuming_after_etrack_does_not_block_ewb(env, encl):
    page, va = encl.phys(OFF_DATA0), env.va()
    env.enter(encl)
    assert env.cpu.eblock(page) == 0
    assert env.cpu.etrack(encl.secs) == 0
    env.cpu.aex(0)
    assert env.cpu.eresume(0, encl.tcs) == 0              # re-entry is harmless
    assert env.ewb(page, va)[0] == SgxReturn.SGX_SUCCESS


def test_lp_entering_between_eblock_and_etrack_is_waited_for(env, encl):
    page, va = encl.phys(OFF_DATA0), env.va()
    assert env.cpu.eblock(page) == 0
    env.enter(encl, lp=2)
    assert env.cpu.etrack(encl.secs) == 0
    assert env.ewb(page, va)[0] == NOT_TRACKED
    env.cpu.eexit(2)
    assert env.ewb(page, va)[0] == 0


def test_all_threads_must_leave(env):
    encl = multi_tcs_enclave(env)
    page, va = encl["pages"][0], env.va()
    for lp in range(3):
        enter(env, encl, lp)
    assert env.cpu.eblock(page) == 0
    assert env.cpu.etrack(encl["secs"]) == 0
    for lp in range(2):
        env.cpu.aex(lp)
        assert env.ewb(page, va)[0] == NOT_TRACKED
    env.cpu.eexit(2)
    assert env.ewb(page, va)[0] == 0


def test_pages_blocked_before_an_older_completed_cycle_stay_evictable(env, encl):
    a, b, va = encl.phys(OFF_DATA0), encl.phys(OFF_DATA1), env.va()
    assert env.cpu.eblock(a) == 0
    assert env.cpu.etrack(encl.secs) == 0                 # completes at once: nobody inside
    env.enter(encl)
    assert env.cpu.eblock(b) == 0
    assert env.cpu.etrack(encl.secs) == 0                 # the thread is now outstanding
    assert env.ewb(a, va)[0] == 0                          # covered by the first cycle
    assert env.ewb(b, va + 8)[0] == NOT_TRACKED           # needs the second one
    env.cpu.aex(0)
    assert env.ewb(b, va + 8)[0] == 0


def test_tracking_is_per_enclave(env, encl):
    other = env.enclave(base=2 * BASE)
    page, va = encl.phys(OFF_DATA0), env.va()
    env.enter(other)                                      # a thread in another enclave
    assert env.cpu.eblock(page) == 0
    assert env.cpu.etrack(encl.secs) == 0
    assert env.ewb(page, va)[0] == 0
    assert env.cpu.etrack(encl.secs) == 0


def test_eblock_sgx_entryepoch_locked(env, encl):
    env.cpu.inject_secs_lock(encl.secs, SECS_LOCK_EPOCH)
    with unchanged(env):
        assert env.cpu.eblock(encl.phys(OFF_DATA0)) == SgxReturn.SGX_ENTRYEPOCH_LOCKED
    assert not env.epcm(encl.phys(OFF_DATA0))["blocked"]


def test_guest_etrack_counts_host_threads(env, encl):
    """Tracking counts all LPs, guest or host (Intel SDM vol. 3D)."""
    page, va = encl.phys(OFF_DATA0), env.va()
    env.enter(encl)
    assert env.cpu.eblock(page) == 0
    assert env.cpu.etrack(encl.secs, ctx=CTX_GUEST) == 0
    assert env.cpu.ewb(env.pageinfo(srcpge=env.mem_addr(), metadata=env.mem_addr(128, 128)),
                       page, va, ctx=CTX_GUEST) == NOT_TRACKED


def test_blocked_page_cannot_be_mapped_anew(env, encl):
    env.enter(encl)
    assert env.cpu.eblock(encl.phys(OFF_CODE)) == 0
    with pytest.raises(PageFault):
        env.cpu.enclave_read(0, encl.lin(OFF_CODE))


# ------------------------------------------------------------------ random sequences

N_LPS = 3
N_PAGES = 3


def multi_tcs_enclave(env: Env) -> dict:
    """An enclave with one TCS per logical processor and N_PAGES data pages."""
    segs = [Segment(0x1000 * i, tcs_image(ossa=0x4000, nssa=2), PageType.TCS)
            for i in range(N_LPS)]
    segs += [Segment(0x4000, b""), Segment(0x5000, b"")]
    segs += [Segment(0x8000 + 0x1000 * i, b"") for i in range(N_PAGES)]
    built = env.bm.build(segs, base=BASE, size=0x10000)
    aspace = AddressSpace()
    for lin, phys in built.pages.items():
        aspace.map(lin, phys, 7)
    for lp in range(N_LPS):
        env.cpu.aspace[lp] = aspace
    return {"secs": built.secs, "aspace": aspace,
            "pages": [built.pages[BASE + 0x8000 + 0x1000 * i] for i in range(N_PAGES)]}


def enter(env: Env, encl: dict, lp: int) -> None:
    assert env.cpu.eenter(lp, BASE + 0x1000 * lp) == 0


OPS = st.lists(st.one_of(
    st.tuples(st.just("in"), st.integers(0, N_LPS - 1)),
    st.tuples(st.just("out"), st.integers(0, N_LPS - 1), st.booleans()),
    st.tuples(st.just("eblock"), st.integers(0, N_PAGES - 1)),
    st.tuples(st.just("etrack")),
    st.tuples(st.just("ewb"), st.integers(0, N_PAGES - 1)),
), min_size=8, max_size=60)


def run_sequence(ops) -> Counter:
    """Drive ``ops`` against the model and the oracle; return the outcomes seen."""
    seen: Counter = Counter()
    env = Env(n_lps=N_LPS)
    encl = multi_tcs_enclave(env)
    cpu, secs = env.cpu, encl["secs"]
    va = env.va()
    pages = list(encl["pages"])
    lin = [BASE + 0x8000 + 0x1000 * i for i in range(N_PAGES)]
    slot = 0
    # oracle state
    entry = [None] * N_LPS          # entry serial of the LP while inside, else None
    cssa = [0] * N_LPS
    serial = 0
    tracks: list[tuple[int, set]] = []   # (time, {(lp, serial)} inside at that ETRACK)
    blocked_at: list[int | None] = [None] * N_PAGES
    now = 0

    def left(snapshot: set) -> bool:
        return all(entry[lp] != s for lp, s in snapshot)

    for op in ops:
        now += 1
        kind = op[0]
        if kind == "in":
            lp = op[1]
            if entry[lp] is not None:
                continue
            if cssa[lp]:
                assert cpu.eresume(lp, BASE + 0x1000 * lp) == 0
                cssa[lp] -= 1
            else:
                assert cpu.eenter(lp, BASE + 0x1000 * lp) == 0
            serial += 1
            entry[lp] = serial
        elif kind == "out":
            lp, use_aex = op[1], op[2]
            if entry[lp] is None:
                continue
            if use_aex:
                cpu.aex(lp)
                cssa[lp] += 1
            else:
                assert cpu.eexit(lp) == 0
            entry[lp] = None
        elif kind == "eblock":
            i = op[1]
            rc = cpu.eblock(pages[i])
            if blocked_at[i] is None:
                assert rc == 0
                blocked_at[i] = now
            else:
                assert rc == SgxReturn.SGX_BLKSTATE
        elif kind == "etrack":
            rc = cpu.etrack(secs)
            seen[("etrack", int(rc))] += 1
            if tracks and not left(tracks[-1][1]):
                assert rc == SgxReturn.SGX_PREV_TRK_INCMPL
            else:
                assert rc == 0
                tracks.append((now, {(lp, s) for lp, s in enumerate(entry) if s is not None}))
        else:
            i = op[1]
            rc, ev = env.ewb(pages[i], va + 8 * slot)
            seen[("ewb", int(rc))] += 1
            if blocked_at[i] is None:
                assert rc == SgxReturn.SGX_PAGE_NOT_BLOCKED
                continue
            tracked = any(t > blocked_at[i] and left(snap) for t, snap in tracks)
            assert rc == (SgxReturn.SGX_SUCCESS if tracked else NOT_TRACKED), (op, tracks)
            if rc == 0:
                slot += 1
                rc, pages[i] = env.eldu(ev, secs)        # reload, unblocked, elsewhere
                assert rc == 0
                encl["aspace"].map(lin[i], pages[i], 7)
                blocked_at[i] = None
    return seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_epoch_model_matches_oracle(ops):
    run_sequence(ops)


def test_epoch_model_matches_oracle_seeded_sweep():
    """Long seeded sequences, so every outcome the oracle distinguishes really occurs."""
    rng = random.Random(20261125)
    seen: Counter = Counter()
    for _ in range(60):
        ops = []
        for _ in range(80):
            kind = rng.choice(["in", "in", "out", "eblock", "etrack", "ewb", "ewb"])
            if kind == "in":
                ops.append(("in", rng.randrange(N_LPS)))
            elif kind == "out":
                ops.append(("out", rng.randrange(N_LPS), rng.random() < 0.5))
            elif kind == "etrack":
                ops.append(("etrack",))
            else:
                ops.append((kind, rng.randrange(N_PAGES)))
        seen += run_sequence(ops)
    for outcome in [("ewb", 0), ("ewb", NOT_TRACKED), ("ewb", SgxReturn.SGX_PAGE_NOT_BLOCKED),
                    ("etrack", 0), ("etrack", SgxReturn.SGX_PREV_TRK_INCMPL)]:
        assert seen[(outcome[0], int(outcome[1]))] > 0, (outcome, seen)
