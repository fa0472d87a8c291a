"""Random enclave lifetimes on a small EPC, in content mode so every value read back is
checked: build (through the uapi), write and read from inside, forced reclaim, ksgxd,
release. After every step the driver's per-enclave invariants (the kernel's SGX code) and
the manager's hold; at the end every EPC page is free again."""

from __future__ import annotations

from drvkit import assert_all_free, assert_clean, check_enclave, machine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from epcsim.arch import PAGE_SIZE
from epcsim.kernel.vdso import EENTER, EEXIT, ERESUME, EnclaveThread, SgxEnclaveRun
from epcsim.selftest.loader import (
    ENCL_BUFFER,
    HEAP,
    op_get_from_address,
    op_nop,
    op_put_to_address,
    setup_test_encl,
)
from epcsim.selftest.loader import TestEncl as Encl

EPC_PAGES = 96
MAX_ENCLAVES = 3
BASES = [0x10_0000_0000 + i * 0x1_0000_0000 for i in range(MAX_ENCLAVES)]


class DriverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.k = machine(EPC_PAGES, content=True)
        self.live: list[Encl] = []
        self.values: dict[tuple[int, int], int] = {}    # (id(encl), addr) -> last value
        self.parked: Encl | None = None                 # a thread left inside, on LP 1

    # ------------------------------------------------------------------ helpers
    def _encl(self, i: int) -> Encl:
        return self.live[i % len(self.live)]

    @staticmethod
    def _pages(encl: Encl) -> list[int]:
        heap = encl.segments[-1]
        return ([encl.base + ENCL_BUFFER, encl.base + ENCL_BUFFER + PAGE_SIZE]
                + [encl.base + HEAP + i * PAGE_SIZE for i in range(heap.size // PAGE_SIZE)])

    def _run(self, encl: Encl, op, tcs: int) -> None:  # type: ignore[no-untyped-def]
        if encl is self.parked:
            tcs = 0                                     # the parked thread holds TCS #2
        run = SgxEnclaveRun(tcs=encl.tcs[tcs])
        assert encl.thread.enter(run, EENTER, op) == 0
        assert run.function == EEXIT, (run.exception_vector, hex(run.exception_addr))

    # ------------------------------------------------------------------ rules
    @precondition(lambda self: len(self.live) < MAX_ENCLAVES)
    @rule(heap_pages=st.sampled_from([1, 2, 5, 12, 20]))
    def create(self, heap_pages: int) -> None:
        used = {e.base for e in self.live}
        base = next(b for b in BASES if b not in used)
        encl = setup_test_encl(self.k, heap_pages * PAGE_SIZE, base=base)
        self.live.append(encl)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 2), page=st.integers(0, 100), slot=st.integers(0, 511),
          value=st.integers(1, 2**64 - 1), tcs=st.integers(0, 1))
    def write(self, i: int, page: int, slot: int, value: int, tcs: int) -> None:
        encl = self._encl(i)
        pages = self._pages(encl)
        addr = pages[page % len(pages)] + slot * 8
        self._run(encl, op_put_to_address(addr, value), tcs)
        self.values[(id(encl), addr)] = value

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 2), pick=st.integers(0, 10_000), fresh=st.booleans(),
          slot=st.integers(0, 511), tcs=st.integers(0, 1))
    def read(self, i: int, pick: int, fresh: bool, slot: int, tcs: int) -> None:
        encl = self._encl(i)
        written = sorted(a for (who, a) in self.values if who == id(encl))
        if written and not fresh:
            addr = written[pick % len(written)]
        else:
            pages = self._pages(encl)
            addr = pages[pick % len(pages)] + slot * 8
        op = op_get_from_address(addr)
        self._run(encl, op, tcs)
        assert op.values["value"] == self.values.get((id(encl), addr), 0), hex(addr)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 2), tcs=st.integers(0, 1))
    def enter_nop(self, i: int, tcs: int) -> None:
        self._run(self._encl(i), op_nop(), tcs)

    @precondition(lambda self: self.live and self.parked is None)
    @rule(i=st.integers(0, 2))
    def park(self, i: int) -> None:
        """A thread enters through TCS #2 on LP 1 and stays inside (until an IPI)."""
        encl = self._encl(i)
        self._run(encl, op_nop(), 1)                    # the TCS is resident and mapped
        cpu = self.k.cpu
        cpu.aspace[1] = encl.mm
        assert cpu.eenter(1, encl.tcs[1]) == 0
        self.parked = encl

    @precondition(lambda self: self.parked is not None)
    @rule()
    def unpark(self) -> None:
        """The parked thread leaves: EEXIT, or, if an IPI made it exit, ERESUME then EEXIT."""
        encl, cpu = self.parked, self.k.cpu
        assert encl is not None
        tcs = encl.tcs[1]
        if cpu.inside(1):
            assert cpu.eexit(1) == 0
        else:
            thread = EnclaveThread(self.k, encl.mm, 1)
            thread.pending[tcs] = (op_nop(), 0)
            run = SgxEnclaveRun(tcs=tcs)
            assert thread.enter(run, ERESUME) == 0
            assert run.function == EEXIT
        assert not cpu.inside(1)
        self.parked = None

    @rule(n=st.integers(1, 40))
    def reclaim(self, n: int) -> None:
        self.k.mgr.reclaim_pages(n)

    @rule()
    def reclaim_everything(self) -> None:
        for _ in range(3):
            self.k.mgr.reclaim_pages(max(self.k.mgr.lru_pages, 1))

    @rule()
    def ksgxd(self) -> None:
        self.k.mgr.run_ksgxd()

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 2))
    def release(self, i: int) -> None:
        encl = self._encl(i)
        if encl is self.parked:
            self.unpark()                               # the process exits its threads first
        self.live.remove(encl)
        assert encl.close() == 0
        self.values = {key: v for key, v in self.values.items() if key[0] != id(encl)}
        assert_clean(self.k)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def enclaves_consistent(self) -> None:
        used = 0
        for encl in self.live:
            s = check_enclave(self.k, encl.file.e)
            used += s["resident"] + s["secs_resident"] + s["va_pages"]
        assert_clean(self.k)
        census = self.k.mgr.census()
        # invariant 1: every EPC page is free (now, or on ksgxd's clock) or accounted to a
        # live enclave.
        assert census["free"] + census["pending"] + used == EPC_PAGES, (census, used)
        assert census["lru"] + census["isolated"] <= used

    def teardown(self) -> None:
        if self.parked is not None:
            self.unpark()
        for encl in self.live:
            assert encl.close() == 0
        self.live.clear()
        assert_all_free(self.k)
        assert not self.k.sgx.owner.backing


DriverMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestDriverMachine = DriverMachine.TestCase
