"""``run_epc_cg_selftests.sh`` (the EPC cgroup series' selftest script) against the model.

The script runs ``test_sgx -t unclobbered_vdso_oversubscribed`` (an enclave as large as the
EPC) in processes placed in cgroups with ``misc.max`` limits, several at once, and checks
which of them pass:

========  =====================================  ============================================
case      limit                                  expectation
========  =====================================  ============================================
SMALL     ``capacity/512`` (below the VA pages    one capacity-size enclave fails
          such an enclave needs)
LARGE     ``4 × SMALL``                          of 4 concurrent at least one passes; of 5
                                                 at least one fails
LARGER    ``capacity``                           8 concurrent all pass, and again with one
                                                 killed at random the rest pass
memcg     LARGE, and ``memory.max = capacity -   4 concurrent all fail (backing of evicted
          2 × LARGE``                            pages is charged to the memory cgroup)
leak      —                                      ``misc.current`` of the test root is 0 after
                                                 all processes exit
========  =====================================  ============================================

"Concurrent" processes run interleaved: the scheduler gives each process one step in turn
(an ioctl over at most :data:`CHUNK_PAGES` pages, or one enclave call), so their
allocations, charges and reclaims mix as they would on a busy machine, deterministically.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from epcsim.arch import PAGE_SIZE, Attribute, Secinfo, Secs
from epcsim.hw.cpu import Processor
from epcsim.hw.crypto import mrenclave, sign_sigstruct
from epcsim.kernel.cgroup import EpcCgroups
from epcsim.kernel.instance import Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_PAGE_MEASURE,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
)
from epcsim.kernel.mm import MAP_FIXED, MAP_SHARED
from epcsim.kernel.vdso import EENTER, EEXIT, EnclaveThread, SgxEnclaveRun
from epcsim.selftest.loader import (
    TCS1,
    _segments,
    op_get_from_buffer,
    op_put_to_buffer,
)
from epcsim.selftest.sgx import DEFAULT_EPC, MAGIC, SelftestFailure

CHUNK_PAGES = 64
TEST_ROOT = "/sgx_selftest"
_DONE = object()
PASSED = "passed"
FAILED = "failed"
KILLED = "killed"


@dataclass
class Harness:
    """A machine with the EPC cgroup attached, and the checks a test made."""

    epc_size: int = DEFAULT_EPC
    seed: int = 0
    checks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Content mode: the value an enclave reads back went through EWB and ELDU.
        self.cpu = Processor(epc_size=self.epc_size, content=True, n_lps=16, seed=self.seed)
        self.kernel = Kernel(self.cpu)
        self.cg = EpcCgroups(self.kernel.mgr)
        self.cg.mkdir(TEST_ROOT)
        self.rng = random.Random(self.seed)
        self._base = 0x10_0000_0000
        self._next_lp = 0

    @property
    def capacity(self) -> int:
        """``misc.capacity``, as the script reads it."""
        return int(self.cg.read("/", "misc.capacity").split()[1])

    def expect(self, what: str, got: Any, want: Any) -> None:
        if got != want:
            raise SelftestFailure(f"{what}: expected {want!r}, got {got!r}")
        self.checks.append(f"{what} == {want!r}")

    def expect_true(self, what: str, ok: bool, detail: str) -> None:
        if not ok:
            raise SelftestFailure(f"{what}: {detail}")
        self.checks.append(f"{what} ({detail})")

    def cgroup(self, name: str, epc_max: int, memory_max: int | None = None) -> str:
        path = f"{TEST_ROOT}/{name}"
        self.cg.mkdir(path)
        self.cg.write(path, "misc.max", f"sgx_epc {epc_max}")
        if memory_max is not None:
            self.cg.write(path, "memory.max", str(memory_max))
        return path

    def run_concurrently(self, path: str, n: int, kill_one: bool = False) -> list[str]:
        """``n`` processes of ``unclobbered_vdso_oversubscribed`` in ``path``; their fates."""
        procs = []
        for _ in range(n):
            procs.append(OversubscribedProcess(self, path, self._base, self._next_lp))
            self._base += 1 << 40
            self._next_lp = (self._next_lp + 1) % self.cpu.n_lps
        runs = [p.steps() for p in procs]
        victim, kill_at = -1, -1
        if kill_one:
            victim = self.rng.randrange(n)
            kill_at = self.rng.randrange(1, procs[0].nsteps)
        alive = list(range(n))
        step = 0
        while alive:
            step += 1
            for i in list(alive):
                if i == victim and step == kill_at:
                    procs[i].kill()
                    alive.remove(i)
                    continue
                if next(runs[i], _DONE) is _DONE:
                    alive.remove(i)
        # The script waits for its processes; meanwhile ksgxd's last write-backs end on its
        # own clock, and the pages it freed are free.
        self.kernel.mgr.idle()
        return [p.fate for p in procs]

    def cleanup(self, path: str) -> None:
        self.cg.rmdir(path)


class OversubscribedProcess:
    """One process running ``unclobbered_vdso_oversubscribed``: build, enter, exit."""

    def __init__(self, h: Harness, path: str, base: int, lp: int) -> None:
        self.h = h
        self.heap = h.capacity
        self.segs = _segments(self.heap)
        total = self.segs[-1].offset + self.segs[-1].size
        size = PAGE_SIZE
        while size < total:
            size <<= 1
        self.size = size
        self.base = -(-base // size) * size
        self.lp = lp
        with h.cg.charging(path):
            # The process opens /dev/sgx_enclave inside its cgroup: the enclave is charged there.
            self.file = h.kernel.open_enclave()
        self.fate = ""
        self.error = ""
        self.nsteps = 3 + sum(-(-s.size // (CHUNK_PAGES * PAGE_SIZE)) for s in self.segs)

    def _fail(self, what: str) -> None:
        self.fate = FAILED
        self.error = what
        self.file.close()

    def kill(self) -> None:
        """SIGKILL: the process exits, the file is closed, the enclave released."""
        self.fate = KILLED
        self.file.close()

    def steps(self) -> Iterator[None]:
        f = self.file
        secs = Secs(size=self.size, baseaddr=self.base, ssaframesize=1,
                    attributes=Attribute.MODE64BIT, xfrm=3)
        rc = f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs.pack()))
        if rc:
            return self._fail(f"SGX_IOC_ENCLAVE_CREATE: errno {-rc}")
        yield
        records = []
        chunk = CHUNK_PAGES * PAGE_SIZE
        for seg in self.segs:
            data = seg.data.ljust(seg.size, b"\0")
            for off in range(0, seg.size, chunk):
                n = min(chunk, seg.size - off)
                arg = SgxEnclaveAddPages(src=data[off:off + n], offset=seg.offset + off,
                                         length=n, secinfo=Secinfo(flags=seg.secinfo).pack(),
                                         flags=SGX_PAGE_MEASURE if seg.measure else 0)
                rc = f.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg)
                if rc:
                    return self._fail(f"SGX_IOC_ENCLAVE_ADD_PAGES at {seg.offset + off:#x}: "
                                      f"errno {-rc}")
                yield
            for o in range(0, seg.size, PAGE_SIZE):
                records.append((seg.offset + o, seg.secinfo,
                                data[o:o + PAGE_SIZE] if seg.measure else None))
        sig = sign_sigstruct(mrenclave(1, self.size, records),
                             attributes=int(Attribute.MODE64BIT), xfrm=3)
        rc = f.ioctl(SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig))
        if rc:
            return self._fail(f"SGX_IOC_ENCLAVE_INIT: errno {-rc}")
        yield
        mm = self.h.kernel.new_mm("test_sgx")
        for seg in self.segs:
            rc = f.mmap(mm, self.base + seg.offset, seg.size, seg.prot, MAP_SHARED | MAP_FIXED)
            if rc:
                return self._fail(f"mmap: errno {-rc}")
        thread = EnclaveThread(self.h.kernel, mm, self.lp)
        encl = _Encl(self.base)
        for op in (op_put_to_buffer(encl, MAGIC), op_get_from_buffer(encl)):  # type: ignore[arg-type]
            run = SgxEnclaveRun(tcs=self.base + TCS1)
            rc = thread.enter(run, EENTER, op)
            if rc or run.function != EEXIT:
                return self._fail(f"{op.name}: rc {rc}, function {run.function}, "
                                  f"vector {run.exception_vector}")
            yield
        if op.values.get("value") != MAGIC:
            return self._fail(f"GET_FROM_BUFFER read {op.values.get('value')!r}")
        self.fate = PASSED
        self.file.close()


@dataclass
class _Encl:
    """What the loader's operations need of a test enclave: where ``encl_buffer`` is."""

    base: int

    @property
    def encl_buffer(self) -> int:
        from epcsim.selftest.loader import ENCL_BUFFER

        return self.base + ENCL_BUFFER


# ------------------------------------------------------------------------- the cases

def _small(h: Harness) -> int:
    return h.capacity // 512


def _leak_check(h: Harness, path: str) -> None:
    h.expect(f"{path} misc.current after all exited", h.cg.read(path, "misc.current"),
             "sgx_epc 0")
    h.cleanup(path)


def small_limit(h: Harness) -> None:
    """SMALL = capacity/512: less than the VA pages an enclave of capacity size needs."""
    path = h.cgroup("small", _small(h))
    fates = h.run_concurrently(path, 1)
    h.expect("one capacity-size enclave under SMALL", fates, [FAILED])
    h.expect_true("the limit was hit", h.cg.events(path)["max"] > 0,
                  f"misc.events max {h.cg.events(path)['max']}")
    _leak_check(h, path)


def large_limit_4(h: Harness) -> None:
    path = h.cgroup("large", 4 * _small(h))
    fates = h.run_concurrently(path, 4)
    h.expect_true("4 concurrent under LARGE: at least one passes", PASSED in fates, str(fates))
    _leak_check(h, path)


def large_limit_5(h: Harness) -> None:
    path = h.cgroup("large", 4 * _small(h))
    fates = h.run_concurrently(path, 5)
    h.expect_true("5 concurrent under LARGE: at least one fails", FAILED in fates, str(fates))
    _leak_check(h, path)


def larger_limit(h: Harness) -> None:
    path = h.cgroup("larger", h.capacity)
    fates = h.run_concurrently(path, 8)
    h.expect("8 concurrent under LARGER", fates, [PASSED] * 8)
    h.expect_true("they were reclaimed from", h.cg.reclaimed(path) > 0,
                  f"{h.cg.reclaimed(path)} pages reclaimed")
    _leak_check(h, path)


def larger_limit_random_kill(h: Harness) -> None:
    path = h.cgroup("larger", h.capacity)
    fates = h.run_concurrently(path, 8, kill_one=True)
    h.expect("one killed", fates.count(KILLED), 1)
    h.expect("the other 7 pass", [f for f in fates if f != KILLED], [PASSED] * 7)
    _leak_check(h, path)


def memcg_limit(h: Harness) -> None:
    large = 4 * _small(h)
    path = h.cgroup("memcg", large, memory_max=h.capacity - 2 * large)
    fates = h.run_concurrently(path, 4)
    h.expect("4 concurrent under LARGE with memory.max", fates, [FAILED] * 4)
    h.expect_true("the backing store hit memory.max", h.cg.memory_events(path)["max"] > 0,
                  f"memory.events max {h.cg.memory_events(path)['max']}")
    h.expect("memory.current after all exited", h.cg.memory_current(path), 0)
    _leak_check(h, path)


def leak(h: Harness) -> None:
    """Every case in one cgroup tree; the test root's ``misc.current`` returns to 0."""
    small = _small(h)
    for name, limit, n in (("a", 4 * small, 4), ("b", h.capacity, 3)):
        path = h.cgroup(name, limit)
        h.run_concurrently(path, n, kill_one=True)
        h.cleanup(path)
    h.expect("test root misc.current", h.cg.read(TEST_ROOT, "misc.current"), "sgx_epc 0")
    h.expect("root misc.current", h.cg.current("/"), 0)
    h.expect("free EPC pages", h.kernel.mgr.sgx_nr_free_pages, h.cpu.npages - h.kernel.mgr.dirty)


TESTS: dict[str, Callable[[Harness], None]] = {
    f.__name__: f for f in (small_limit, large_limit_4, large_limit_5, larger_limit,
                            larger_limit_random_kill, memcg_limit, leak)
}
