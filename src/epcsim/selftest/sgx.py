"""The kernel's SGX selftests (``tools/testing/selftests/sgx/main.c``) against the model.

Each test follows the steps and expected values of the kernel's selftest under the kernel's
own name. A test gets a fresh processor and kernel, and records every check it makes; a failed
check raises :class:`SelftestFailure` naming what was expected and what came.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from epcsim.arch import PAGE_SIZE, PageType, SecinfoFlags
from epcsim.hw.cpu import Processor
from epcsim.kernel.instance import Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    SgxEnclaveModifyTypes,
    SgxEnclaveRemovePages,
    SgxEnclaveRestrictPermissions,
)
from epcsim.kernel.mm import MAP_FIXED, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE
from epcsim.kernel.vdso import EENTER, EEXIT, ERESUME, Operation, SgxEnclaveRun
from epcsim.selftest.loader import (
    TestEncl,
    op_eaccept,
    op_emodpe,
    op_get_from_address,
    op_get_from_buffer,
    op_init_tcs_page,
    op_nop,
    op_put_to_address,
    op_put_to_buffer,
    setup_test_encl,
)

MAGIC = 0x1122334455667788
MAGIC2 = 0x8877665544332211
R, W, X = SecinfoFlags.R, SecinfoFlags.W, SecinfoFlags.X
PENDING, MODIFIED, PR = SecinfoFlags.PENDING, SecinfoFlags.MODIFIED, SecinfoFlags.PR
REG, TCS, TRIM = PageType.REG << 8, PageType.TCS << 8, PageType.TRIM << 8
DEFAULT_EPC = 4 << 20


class SelftestFailure(AssertionError):
    pass


@dataclass
class Harness:
    """One test's machine and the checks it made."""

    epc_size: int = DEFAULT_EPC
    seed: int = 0
    checks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cpu = Processor(epc_size=self.epc_size, content=True, n_lps=2, seed=self.seed)
        self.kernel = Kernel(self.cpu)

    @property
    def total_epc(self) -> int:
        """``get_total_epc_mem()``: the sum of the CPUID EPC section sizes."""
        return sum(((ecx & 0xFFFFF000) | (edx << 32))
                   for _, _, ecx, edx in self.cpu.cpuid_epc_sections())

    def expect(self, what: str, got: Any, want: Any) -> None:
        if got != want:
            raise SelftestFailure(f"{what}: expected {_fmt(want)}, got {_fmt(got)}")
        self.checks.append(f"{what} == {_fmt(want)}")

    def run(self, encl: TestEncl, op: Operation, tcs: int | None = None,
            function: int = EENTER, run: SgxEnclaveRun | None = None) -> SgxEnclaveRun:
        run = run if run is not None else SgxEnclaveRun(tcs=tcs if tcs is not None
                                                        else encl.tcs[0])
        rc = encl.thread.enter(run, function, op)
        self.expect(f"enter({op.name if op else 'ERESUME'})", rc, 0)
        return run

    def expect_eexit(self, run: SgxEnclaveRun, what: str) -> None:
        if run.function != EEXIT:
            raise SelftestFailure(f"{what}: expected EEXIT, got function {run.function} with "
                                  f"exception vector {run.exception_vector}, error code "
                                  f"{run.exception_error_code:#x}, addr {run.exception_addr:#x}")
        self.checks.append(f"{what}: EEXIT")

    def put_get(self, encl: TestEncl, value: int = MAGIC, tcs: int | None = None) -> None:
        run = self.run(encl, op_put_to_buffer(encl, value), tcs)
        self.expect_eexit(run, "PUT_TO_BUFFER")
        op = op_get_from_buffer(encl)
        run = self.run(encl, op, tcs)
        self.expect_eexit(run, "GET_FROM_BUFFER")
        self.expect("GET_FROM_BUFFER value", op.values.get("value"), value)

    def write_read(self, encl: TestEncl, addr: int, value: int) -> None:
        self.expect_eexit(self.run(encl, op_put_to_address(addr, value)), "PUT_TO_ADDRESS")
        op = op_get_from_address(addr)
        self.expect_eexit(self.run(encl, op), "GET_FROM_ADDRESS")
        self.expect("GET_FROM_ADDRESS value", op.values.get("value"), value)

    def eaccept(self, encl: TestEncl, addr: int, flags: int, tcs: int | None = None) -> None:
        tcs = tcs if tcs is not None else encl.tcs[0]
        op = op_eaccept(encl, tcs, addr, flags)
        self.expect_eexit(self.run(encl, op, tcs), "EACCEPT")
        self.expect("EACCEPT ret", op.values.get("ret"), 0)


def _fmt(v: Any) -> str:
    return f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 255 else repr(v)


def _ioctl(h: Harness, encl: TestEncl, cmd: int, arg: Any, what: str, rc: int,
           **fields: int) -> None:
    got = encl.file.ioctl(cmd, arg)
    h.expect(f"{what} ret", got, rc)
    for name, want in fields.items():
        h.expect(f"{what} {name}", getattr(arg, name), want)


# ------------------------------------------------------------------------- the tests

def unclobbered_vdso(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    run = SgxEnclaveRun(tcs=encl.tcs[0])
    h.run(encl, op_put_to_buffer(encl, MAGIC), run=run)
    h.expect_eexit(run, "PUT_TO_BUFFER")
    h.expect("user_data", run.user_data, 0)
    op = op_get_from_buffer(encl)
    h.run(encl, op, run=run)
    h.expect_eexit(run, "GET_FROM_BUFFER")
    h.expect("GET_FROM_BUFFER value", op.values.get("value"), MAGIC)
    h.expect("user_data", run.user_data, 0)


def unclobbered_vdso_oversubscribed(h: Harness) -> None:
    heap = h.total_epc
    encl = setup_test_encl(h.kernel, heap)
    h.expect("enclave larger than the EPC", encl.size > h.total_epc, True)
    written_by_build = h.kernel.mgr.counters()["written"]
    h.expect("pages reclaimed while building", written_by_build > 0, True)
    h.put_get(encl)
    h.expect("pages loaded back with ELDU", h.kernel.mgr.counters()["eldu"] > 0, True)


def unclobbered_vdso_oversubscribed_remove(h: Harness) -> None:
    heap = h.total_epc
    encl = setup_test_encl(h.kernel, heap)
    h.put_get(encl)
    heap_off = encl.segments[-1].offset
    arg = SgxEnclaveModifyTypes(offset=heap_off, length=heap, page_type=PageType.TRIM)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_MODIFY_TYPES, arg, "MODIFY_TYPES(heap, TRIM)", 0,
           result=0, count=heap)
    for addr in range(encl.base + heap_off, encl.base + heap_off + heap, PAGE_SIZE):
        op = op_eaccept(encl, encl.tcs[0], addr, TRIM | MODIFIED)
        run = SgxEnclaveRun(tcs=encl.tcs[0])
        encl.thread.enter(run, EENTER, op)
        if run.function != EEXIT or op.values.get("ret") != 0:
            raise SelftestFailure(f"EACCEPT(TRIM) of heap page {addr:#x}: function "
                                  f"{run.function}, vector {run.exception_vector}, ret "
                                  f"{op.values.get('ret')}")
    h.checks.append(f"EACCEPT(TRIM|MODIFIED) of {heap // PAGE_SIZE} heap pages: EEXIT, ret 0")
    arg2 = SgxEnclaveRemovePages(offset=heap_off, length=heap)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_REMOVE_PAGES, arg2, "REMOVE_PAGES(heap)", 0, count=heap)


def clobbered_vdso(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    h.put_get(encl)


def clobbered_vdso_and_user_function(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)

    def handler(run: SgxEnclaveRun) -> int:
        run.user_data = 0
        return 0
    for op in (op_put_to_buffer(encl, MAGIC), op_get_from_buffer(encl)):
        run = SgxEnclaveRun(tcs=encl.tcs[0], user_handler=handler, user_data=0xDEADBEEF)
        h.run(encl, op, run=run)
        h.expect_eexit(run, op.name)
        h.expect("user_data after the user handler", run.user_data, 0)
    h.expect("GET_FROM_BUFFER value", op.values.get("value"), MAGIC)


def tcs_entry(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    for tcs in encl.tcs:
        run = h.run(encl, op_nop(), tcs)
        h.expect_eexit(run, f"NOP through TCS {tcs - encl.base:#x}")
        h.expect("exception vector", run.exception_vector, 0)


def pte_permissions(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    data = encl.data_page
    h.write_read(encl, data, MAGIC)
    h.expect("mprotect(data page, PROT_READ)", encl.mm.mprotect(data, PAGE_SIZE, PROT_READ), 0)
    run = h.run(encl, op_put_to_address(data, MAGIC2))
    h.expect("function", run.function, ERESUME)
    h.expect("exception vector", run.exception_vector, 14)
    h.expect("exception error code", run.exception_error_code, 0x7)
    h.expect("exception addr", run.exception_addr, data)
    h.expect("mprotect(data page, RW)",
             encl.mm.mprotect(data, PAGE_SIZE, PROT_READ | PROT_WRITE), 0)
    run = h.run(encl, None, function=ERESUME, run=run)   # type: ignore[arg-type]
    h.expect_eexit(run, "ERESUME")
    op = op_get_from_address(data)
    h.expect_eexit(h.run(encl, op), "GET_FROM_ADDRESS")
    h.expect("value", op.values.get("value"), MAGIC2)


def tcs_permissions(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    arg = SgxEnclaveRestrictPermissions(offset=0, length=PAGE_SIZE, permissions=PROT_READ)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, arg, "RESTRICT_PERMISSIONS(TCS, R)",
           -errno.EINVAL, result=0, count=0)


def epcm_permissions(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    data = encl.data_page
    h.write_read(encl, data, MAGIC)
    arg = SgxEnclaveRestrictPermissions(offset=data - encl.base, length=PAGE_SIZE,
                                        permissions=PROT_READ)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS, arg, "RESTRICT_PERMISSIONS(data, R)",
           0, result=0, count=PAGE_SIZE)
    h.eaccept(encl, data, R | REG | PR)
    run1 = h.run(encl, op_put_to_address(data, MAGIC2))
    h.expect("function", run1.function, ERESUME)
    h.expect("exception vector", run1.exception_vector, 14)
    h.expect("exception error code", run1.exception_error_code, 0x8007)
    h.expect("exception addr", run1.exception_addr, data)
    op = op_emodpe(encl, encl.tcs[1], data, R | W)
    h.expect_eexit(h.run(encl, op, encl.tcs[1]), "EMODPE through TCS #2")
    h.expect("EMODPE ret", op.values.get("ret"), 0)
    run1 = h.run(encl, None, function=ERESUME, run=run1)  # type: ignore[arg-type]
    h.expect_eexit(run1, "ERESUME on TCS #1")
    op2 = op_get_from_address(data)
    h.expect_eexit(h.run(encl, op2), "GET_FROM_ADDRESS")
    h.expect("value", op2.values.get("value"), MAGIC2)


def _extra_pages(h: Harness, encl: TestEncl, n: int, prot: int) -> int:
    addr = encl.base + encl.image_size
    h.expect("room for dynamic pages", encl.image_size + n * PAGE_SIZE <= encl.size, True)
    h.expect("mmap of the dynamic range",
             encl.file.mmap(encl.mm, addr, n * PAGE_SIZE, prot, MAP_SHARED | MAP_FIXED), 0)
    return addr


def augment(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    addr = _extra_pages(h, encl, 1, PROT_READ | PROT_WRITE | PROT_EXEC)
    run1 = h.run(encl, op_put_to_address(addr, MAGIC))
    h.expect("function", run1.function, ERESUME)
    h.expect("exception vector", run1.exception_vector, 14)
    h.expect("exception error code", run1.exception_error_code, 0x8007)
    h.expect("exception addr", run1.exception_addr, addr)
    h.eaccept(encl, addr, R | W | REG | PENDING, tcs=encl.tcs[1])
    run1 = h.run(encl, None, function=ERESUME, run=run1)  # type: ignore[arg-type]
    h.expect_eexit(run1, "ERESUME on TCS #1")
    op = op_get_from_address(addr)
    h.expect_eexit(h.run(encl, op), "GET_FROM_ADDRESS")
    h.expect("value", op.values.get("value"), MAGIC)


def augment_via_eaccept(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    addr = _extra_pages(h, encl, 1, PROT_READ | PROT_WRITE | PROT_EXEC)
    h.eaccept(encl, addr, R | W | REG | PENDING)
    h.write_read(encl, addr, MAGIC)


def tcs_create(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    addr = _extra_pages(h, encl, 3, PROT_READ | PROT_WRITE)
    stack, ssa, tcs = addr, addr + PAGE_SIZE, addr + 2 * PAGE_SIZE
    for page in (stack, ssa, tcs):
        h.eaccept(encl, page, R | W | REG | PENDING)
    op = op_init_tcs_page(tcs, ssa - encl.base, 0x2000)
    h.expect_eexit(h.run(encl, op), "INIT_TCS_PAGE")
    arg = SgxEnclaveModifyTypes(offset=tcs - encl.base, length=PAGE_SIZE,
                                page_type=PageType.TCS)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_MODIFY_TYPES, arg, "MODIFY_TYPES(TCS)", 0, result=0,
           count=PAGE_SIZE)
    h.eaccept(encl, tcs, TCS | MODIFIED)
    h.put_get(encl, MAGIC, tcs=tcs)
    arg = SgxEnclaveModifyTypes(offset=stack - encl.base, length=3 * PAGE_SIZE,
                                page_type=PageType.TRIM)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_MODIFY_TYPES, arg, "MODIFY_TYPES(3 pages, TRIM)", 0,
           result=0, count=3 * PAGE_SIZE)
    for page in (stack, ssa, tcs):
        h.eaccept(encl, page, TRIM | MODIFIED)
    arg2 = SgxEnclaveRemovePages(offset=stack - encl.base, length=3 * PAGE_SIZE)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_REMOVE_PAGES, arg2, "REMOVE_PAGES(3 pages)", 0,
           count=3 * PAGE_SIZE)
    h.eaccept(encl, tcs, R | W | REG | PENDING)
    h.write_read(encl, tcs, MAGIC)


def _trim_data_page(h: Harness, encl: TestEncl) -> int:
    data = encl.data_page
    arg = SgxEnclaveModifyTypes(offset=data - encl.base, length=PAGE_SIZE,
                                page_type=PageType.TRIM)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_MODIFY_TYPES, arg, "MODIFY_TYPES(data, TRIM)", 0,
           result=0, count=PAGE_SIZE)
    return data


def remove_added_page_no_eaccept(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    h.write_read(encl, encl.data_page, MAGIC)
    data = _trim_data_page(h, encl)
    arg = SgxEnclaveRemovePages(offset=data - encl.base, length=PAGE_SIZE)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_REMOVE_PAGES, arg, "REMOVE_PAGES(data)", -errno.EPERM,
           count=0)


def _read_fails(h: Harness, encl: TestEncl, data: int) -> None:
    run = h.run(encl, op_get_from_address(data))
    h.expect("function", run.function, ERESUME)
    h.expect("exception vector", run.exception_vector, 14)
    h.expect("exception error code", run.exception_error_code, 0x8005)
    h.expect("exception addr", run.exception_addr, data)


def remove_added_page_invalid_access(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    h.write_read(encl, encl.data_page, MAGIC)
    data = _trim_data_page(h, encl)
    _read_fails(h, encl, data)


def remove_added_page_invalid_access_after_eaccept(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    h.write_read(encl, encl.data_page, MAGIC)
    data = _trim_data_page(h, encl)
    h.eaccept(encl, data, TRIM | MODIFIED)
    _read_fails(h, encl, data)


def remove_untouched_page(h: Harness) -> None:
    encl = setup_test_encl(h.kernel)
    data = _trim_data_page(h, encl)
    h.eaccept(encl, data, TRIM | MODIFIED)
    arg = SgxEnclaveRemovePages(offset=data - encl.base, length=PAGE_SIZE)
    _ioctl(h, encl, SGX_IOC_ENCLAVE_REMOVE_PAGES, arg, "REMOVE_PAGES(data)", 0,
           count=PAGE_SIZE)


TESTS: dict[str, Callable[[Harness], None]] = {
    f.__name__: f for f in (
        unclobbered_vdso, unclobbered_vdso_oversubscribed,
        unclobbered_vdso_oversubscribed_remove, clobbered_vdso,
        clobbered_vdso_and_user_function, tcs_entry, pte_permissions, tcs_permissions,
        epcm_permissions, augment, augment_via_eaccept, tcs_create,
        remove_added_page_no_eaccept, remove_added_page_invalid_access,
        remove_added_page_invalid_access_after_eaccept, remove_untouched_page)
}
