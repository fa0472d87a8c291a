"""Enclave threads and ``__vdso_sgx_enter_enclave``.

A thread runs on one logical processor and enters an enclave through a TCS. What it does
inside is an *operation*: a list of atomic steps (a load, a store, an ENCLU leaf); no x86 code
is executed. An exception inside the enclave is taken with an AEX. The kernel fixes what it
can (an evicted page is reloaded, an SGX2 page is added) and the thread resumes at once with
ERESUME, as the vDSO's AEP does; anything else is reported the way ``struct sgx_enclave_run``
reports it (vector, error code, address), and the caller may ERESUME later to finish the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from epcsim.arch import Enclu
from epcsim.hw.cpu import ArchFault, PageFault
from epcsim.kernel.mm import Mm

if TYPE_CHECKING:
    from epcsim.kernel.instance import Kernel

EENTER = int(Enclu.EENTER)
ERESUME = int(Enclu.ERESUME)
EEXIT = int(Enclu.EEXIT)

MAX_FAULT_RETRIES = 10_000


@dataclass
class SgxEnclaveRun:
    """``struct sgx_enclave_run``."""

    tcs: int
    function: int = 0
    exception_vector: int = 0
    exception_error_code: int = 0
    exception_addr: int = 0
    user_handler: Callable[[SgxEnclaveRun], int] | None = None
    user_data: int = 0


class EnclaveContext:
    """What an operation's steps may do: the enclave's view of the machine."""

    def __init__(self, thread: EnclaveThread) -> None:
        self.thread = thread
        self.cpu = thread.kernel.cpu
        self.lp = thread.lp

    def read(self, addr: int, size: int = 8) -> bytes:
        return self.cpu.enclave_read(self.lp, addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self.cpu.enclave_write(self.lp, addr, data)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def eaccept(self, secinfo_addr: int, target: int, flags: int) -> int:
        return int(self.cpu.eaccept(self.lp, secinfo_addr, target, flags))

    def emodpe(self, secinfo_addr: int, target: int, flags: int) -> int:
        return int(self.cpu.emodpe(self.lp, secinfo_addr, target, flags))

    def eacceptcopy(self, secinfo_addr: int, dest: int, src: int, flags: int) -> int:
        return int(self.cpu.eacceptcopy(self.lp, secinfo_addr, dest, src, flags))


Step = Callable[[EnclaveContext], Any]


@dataclass
class Operation:
    """An enclave operation: steps run in order; results land in ``values``."""

    name: str
    steps: list[Step]
    values: dict[str, Any] = field(default_factory=dict)


class EnclaveThread:
    """A user thread of process ``mm`` pinned to logical processor ``lp``."""

    def __init__(self, kernel: Kernel, mm: Mm, lp: int) -> None:
        self.kernel = kernel
        self.mm = mm
        self.lp = lp
        self.ctx = EnclaveContext(self)
        self.pending: dict[int, tuple[Operation, int]] = {}   # TCS -> interrupted step
        self.faults_fixed = 0
        self.aex = 0

    def _retry_enclu(self, fn: Callable[[], Any], run: SgxEnclaveRun) -> bool:
        """EENTER/ERESUME, fixing faults on the TCS page; False when it cannot enter."""
        cpu = self.kernel.cpu
        for _ in range(MAX_FAULT_RETRIES):
            try:
                fn()
                return True
            except PageFault as pf:
                outcome = self.kernel.handle_page_fault(self.mm, pf.address, pf.error_code)
                if outcome in ("fixed", "retry"):
                    continue
                self._report(run, pf)
                return False
            except ArchFault as f:
                self._report(run, f)
                return False
        _ = cpu
        return False

    @staticmethod
    def _report(run: SgxEnclaveRun, f: ArchFault) -> None:
        run.exception_vector = f.vector
        run.exception_error_code = f.error_code
        run.exception_addr = f.address

    def enter(self, run: SgxEnclaveRun, function: int, op: Operation | None = None) -> int:
        """``__vdso_sgx_enter_enclave(..., function, ..., run)``: 0, or -EINVAL."""
        cpu = self.kernel.cpu
        cpu.aspace[self.lp] = self.mm
        tcs = run.tcs
        if function == EENTER:
            if op is None:
                return -22
            run.exception_vector = run.exception_error_code = run.exception_addr = 0
            if not self._retry_enclu(lambda: cpu.eenter(self.lp, tcs), run):
                run.function = EENTER
                return self._finish(run)
            pc = 0
        elif function == ERESUME:
            if tcs not in self.pending:
                return -22
            op, pc = self.pending.pop(tcs)
            run.exception_vector = run.exception_error_code = run.exception_addr = 0
            if not self._retry_enclu(lambda: cpu.eresume(self.lp, tcs), run):
                run.function = ERESUME
                self.pending[tcs] = (op, pc)
                return self._finish(run)
        else:
            return -22
        return self._run(run, op, pc)

    def _run(self, run: SgxEnclaveRun, op: Operation, pc: int) -> int:
        cpu = self.kernel.cpu
        tcs = run.tcs
        retries = 0
        while pc < len(op.steps):
            if not cpu.inside(self.lp):
                # Interrupted (an IPI, or a fault the kernel fixed): the AEP resumes.
                if not self._retry_enclu(lambda: cpu.eresume(self.lp, tcs), run):
                    run.function = ERESUME
                    self.pending[tcs] = (op, pc)
                    return self._finish(run)
            try:
                op.steps[pc](self.ctx)
                pc += 1
                retries = 0     # a livelock is faults without progress, not many faults
                continue
            except ArchFault as f:
                if cpu.inside(self.lp):
                    cpu.aex(self.lp)
                self.aex += 1
                if isinstance(f, PageFault):
                    outcome = self.kernel.handle_page_fault(self.mm, f.address, f.error_code)
                    if outcome in ("fixed", "retry"):
                        retries += 1
                        self.faults_fixed += outcome == "fixed"
                        if retries > MAX_FAULT_RETRIES:
                            raise RuntimeError("fault livelock") from f
                        continue
                self._report(run, f)
                run.function = ERESUME
                self.pending[tcs] = (op, pc)
                return self._finish(run)
        cpu.eexit(self.lp)
        run.function = EEXIT
        return self._finish(run)

    def _finish(self, run: SgxEnclaveRun) -> int:
        if run.user_handler is not None:
            run.user_handler(run)
        return 0
