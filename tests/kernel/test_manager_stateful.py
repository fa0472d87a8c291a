"""Random allocs, frees, accesses and reclaims; the manager's invariants hold
after every step: every EPC page is in exactly one place, free + used = total, no page is
freed twice, -ENOMEM only with an empty LRU, -EBUSY only without reclaim."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from rig import Rig

from epcsim.kernel.main import EBUSY, ENOMEM, W_FREE, W_LRU, W_UNTRACKED

N_ENCL = 3


class ManagerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.r = Rig(pages=80, n_enclaves=N_ENCL, events=1_000_000)
        self.held: dict[int, int] = {}      # page -> enclave, pages the test added
        self.allocated: set[int] = ({int(p) for p in self.r.owner.state.secs}
                                    | {int(p) for p in self.r.owner.state.va})
        self.seen_events = len(self.r.mgr.events())   # boot frees and the enclaves' SECS/VA
        self.total = self.r.cpu.npages

    def _sync(self) -> None:
        """Walk the new manager events: an alloc needs a free page, a free an allocated one."""
        events = self.r.mgr.events()
        for name, page, _ in events[self.seen_events:]:
            if name == "alloc":
                assert page not in self.allocated, f"page {page} allocated twice"
                self.allocated.add(page)
            elif name == "free":
                assert page in self.allocated, f"page {page} freed twice"
                self.allocated.discard(page)
        self.seen_events = len(events)
        for page in [p for p in self.held if p not in self.allocated]:
            del self.held[page]   # the reclaimer evicted it

    @rule(e=st.integers(0, N_ENCL - 1), reclaim=st.booleans())
    def add(self, e: int, reclaim: bool) -> None:
        lru_before = self.r.mgr.lru_pages
        free_before = self.r.mgr.sgx_nr_free_pages
        page = self.r.owner.add(self.r.mgr, e, reclaim)
        if page == -ENOMEM:
            assert free_before == 0 and lru_before == 0
        elif page == -EBUSY:
            assert not reclaim and free_before == 0
        else:
            assert page >= 0
            self.held[page] = e
        self._sync()

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 10_000))
    def free(self, i: int) -> None:
        page = sorted(self.held)[i % len(self.held)]
        assert self.r.mgr.unmark_reclaimable(page) == 0
        assert self.r.mgr.free(page) == 0
        assert self.r.mgr.where(page) == W_FREE
        self._sync()
        assert page not in self.held

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 10_000))
    def access(self, i: int) -> None:
        page = sorted(self.held)[i % len(self.held)]
        self.r.owner.state.accessed[page] = 1
        self.r.mgr.touch(page)

    @rule(nr=st.integers(1, 20))
    def reclaim(self, nr: int) -> None:
        self.r.mgr.reclaim_pages(nr)
        self._sync()

    @rule()
    def ksgxd(self) -> None:
        self.r.mgr.run_ksgxd()
        assert not self.r.mgr.ksgxd_awake
        self._sync()

    @rule(e=st.integers(0, N_ENCL - 1), dying=st.booleans())
    def set_dying(self, e: int, dying: bool) -> None:
        self.r.owner.state.dying[e] = dying

    @invariant()
    def every_page_in_exactly_one_place(self) -> None:
        self.r.mgr.check()
        census = self.r.mgr.census()
        assert sum(census.values()) == self.total
        used = census["lru"] + census["isolated"] + census["untracked"] + census["leaked"]
        assert census["free"] + used == self.total
        assert census["isolated"] == 0          # nothing stays isolated between calls
        assert census["free"] == self.r.mgr.sgx_nr_free_pages
        assert len(self.allocated) == used

    @invariant()
    def held_pages_are_resident_and_owned(self) -> None:
        flags = self.r.cpu.st.flags
        for page in self.held:
            assert flags[page] & 0x40, f"held page {page} is not VALID"
            assert self.r.mgr.where(page) in (W_LRU, W_UNTRACKED)

    @invariant()
    def refs_balance(self) -> None:
        assert (self.r.owner.state.refs == 0).all()


TestManagerInvariants = ManagerMachine.TestCase
TestManagerInvariants.settings = settings(max_examples=60, stateful_step_count=40,
                                          deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
