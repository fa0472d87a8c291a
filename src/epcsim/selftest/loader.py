"""The selftests' loader and test enclave (``tools/testing/selftests/sgx``: load.c, main.c,
test_encl.c), on the model.

The enclave image has the same shape as ``test_encl.elf``: a TCS segment (two TCS pages), a
code segment, a data segment holding ``encl_buffer`` (two pages), the SSA frames and the
stacks, and an unmeasured heap of ``heap_size`` bytes. The loader creates, adds, measures,
signs, initialises and maps it through the uapi, exactly as the selftests do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from epcsim.arch import PAGE_SIZE, Attribute, PageType, Secinfo, Secs, secinfo_flags
from epcsim.hw.baremetal import tcs_image
from epcsim.hw.crypto import mrenclave, sign_sigstruct
from epcsim.kernel.instance import Kernel
from epcsim.kernel.ioctl import (
    SGX_IOC_ENCLAVE_ADD_PAGES,
    SGX_IOC_ENCLAVE_CREATE,
    SGX_IOC_ENCLAVE_INIT,
    SGX_PAGE_MEASURE,
    EnclaveFile,
    SgxEnclaveAddPages,
    SgxEnclaveCreate,
    SgxEnclaveInit,
)
from epcsim.kernel.mm import MAP_FIXED, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE, Mm
from epcsim.kernel.vdso import EnclaveThread, Operation

TCS1, TCS2 = 0x0000, 0x1000
TEXT = 0x2000
ENCL_BUFFER = 0x3000          # encl_buffer: two pages
DATA_PAGE = 0x4000            # the selftests' "data page": the second page of encl_buffer
SSA1, SSA2 = 0x5000, 0x6000
STACK1, STACK2 = 0x7000, 0x8000
HEAP = 0x9000
ENCL_HEAP_SIZE_DEFAULT = PAGE_SIZE
CODE = b"test_encl: ENCL_OP_* dispatcher (modelled; no x86 code runs)".ljust(PAGE_SIZE, b"\0")


class LoaderError(Exception):
    """The enclave could not be built: which step, and the errno."""


@dataclass
class Segment:
    offset: int
    size: int
    secinfo: int
    prot: int
    measure: bool
    data: bytes = b""


@dataclass
class TestEncl:
    """A loaded test enclave: the file, the process, the layout."""

    kernel: Kernel
    file: EnclaveFile
    mm: Mm
    base: int
    size: int
    segments: list[Segment]
    thread: EnclaveThread
    tcs: list[int] = field(default_factory=list)

    @property
    def encl_buffer(self) -> int:
        return self.base + ENCL_BUFFER

    @property
    def data_page(self) -> int:
        return self.base + DATA_PAGE

    @property
    def image_size(self) -> int:
        end = self.segments[-1]
        return end.offset + end.size

    def stack(self, tcs: int) -> int:
        """A 64-byte aligned scratch slot on the stack of the thread entering ``tcs``."""
        return self.base + (STACK2 if tcs == self.base + TCS2 else STACK1) + 0x800

    def close(self) -> int:
        return self.file.close()


def _segments(heap_size: int) -> list[Segment]:
    rw = secinfo_flags(PageType.REG, PROT_READ | PROT_WRITE)
    tcs = tcs_image(ossa=SSA1, nssa=1, oentry=TEXT) + tcs_image(ossa=SSA2, nssa=1, oentry=TEXT)
    data = b"\0" * (HEAP - ENCL_BUFFER)
    return [
        Segment(TCS1, 2 * PAGE_SIZE, secinfo_flags(PageType.TCS), PROT_READ | PROT_WRITE, True,
                tcs),
        Segment(TEXT, PAGE_SIZE, secinfo_flags(PageType.REG, PROT_READ | PROT_EXEC),
                PROT_READ | PROT_EXEC, True, CODE),
        Segment(ENCL_BUFFER, HEAP - ENCL_BUFFER, rw, PROT_READ | PROT_WRITE, True, data),
        Segment(HEAP, heap_size, rw, PROT_READ | PROT_WRITE, False),
    ]


def setup_test_encl(kernel: Kernel, heap_size: int = ENCL_HEAP_SIZE_DEFAULT, *, lp: int = 0,
                    base: int = 0x10_0000_0000, mm: Mm | None = None) -> TestEncl:
    """``setup_test_encl()``: build, initialise and map the test enclave."""
    if heap_size <= 0 or heap_size % PAGE_SIZE:
        raise ValueError("heap_size must be a positive multiple of 4096")
    segs = _segments(heap_size)
    total = segs[-1].offset + segs[-1].size
    size = PAGE_SIZE
    while size < total:
        size <<= 1
    size = max(size, 2 * PAGE_SIZE)
    base = -(-base // size) * size            # reserve and align, as the loader does
    f = kernel.open_enclave()
    secs = Secs(size=size, baseaddr=base, ssaframesize=1, attributes=Attribute.MODE64BIT,
                xfrm=3)
    rc = f.ioctl(SGX_IOC_ENCLAVE_CREATE, SgxEnclaveCreate(secs.pack()))
    if rc:
        f.close()
        raise LoaderError(f"SGX_IOC_ENCLAVE_CREATE failed: errno {-rc}")
    records = []
    for seg in segs:
        data = seg.data.ljust(seg.size, b"\0")
        arg = SgxEnclaveAddPages(src=data, offset=seg.offset, length=seg.size,
                                 secinfo=Secinfo(flags=seg.secinfo).pack(),
                                 flags=SGX_PAGE_MEASURE if seg.measure else 0)
        rc = f.ioctl(SGX_IOC_ENCLAVE_ADD_PAGES, arg)
        if rc:
            f.close()
            raise LoaderError(f"SGX_IOC_ENCLAVE_ADD_PAGES at {seg.offset:#x} failed: "
                              f"errno {-rc} after {arg.count} bytes")
        for off in range(0, seg.size, PAGE_SIZE):
            records.append((seg.offset + off, seg.secinfo,
                            data[off:off + PAGE_SIZE] if seg.measure else None))
    sig = sign_sigstruct(mrenclave(1, size, records), attributes=int(Attribute.MODE64BIT),
                         xfrm=3)
    rc = f.ioctl(SGX_IOC_ENCLAVE_INIT, SgxEnclaveInit(sig))
    if rc:
        f.close()
        raise LoaderError(f"SGX_IOC_ENCLAVE_INIT failed: errno {-rc}")
    mm = mm if mm is not None else kernel.new_mm("test_encl")
    for seg in segs:
        rc = f.mmap(mm, base + seg.offset, seg.size, seg.prot, MAP_SHARED | MAP_FIXED)
        if rc:
            f.close()
            raise LoaderError(f"mmap of segment {seg.offset:#x} failed: errno {-rc}")
    thread = EnclaveThread(kernel, mm, lp)
    return TestEncl(kernel, f, mm, base, size, segs, thread, [base + TCS1, base + TCS2])


# ------------------------------------------------------------------- test_encl.c operations

def _store(addr: int, value: int):  # type: ignore[no-untyped-def]
    return lambda ctx: ctx.write_u64(addr, value)


def op_put_to_buffer(encl: TestEncl, value: int) -> Operation:
    return Operation("ENCL_OP_PUT_TO_BUFFER", [_store(encl.encl_buffer, value)])


def op_get_from_buffer(encl: TestEncl) -> Operation:
    op = Operation("ENCL_OP_GET_FROM_BUFFER", [])
    op.steps.append(lambda ctx: op.values.__setitem__("value", ctx.read_u64(encl.encl_buffer)))
    return op


def op_put_to_address(addr: int, value: int) -> Operation:
    return Operation("ENCL_OP_PUT_TO_ADDRESS", [_store(addr, value)])


def op_get_from_address(addr: int) -> Operation:
    op = Operation("ENCL_OP_GET_FROM_ADDRESS", [])
    op.steps.append(lambda ctx: op.values.__setitem__("value", ctx.read_u64(addr)))
    return op


def op_nop() -> Operation:
    return Operation("ENCL_OP_NOP", [])


def _secinfo_steps(encl: TestEncl, tcs: int, flags: int, leaf: str, target: int,
                   op: Operation) -> list:  # type: ignore[type-arg]
    """Write the SECINFO on the thread's stack, then run the ENCLU leaf on it."""
    slot = encl.stack(tcs)
    content = encl.kernel.cpu.content

    def run(ctx) -> None:  # type: ignore[no-untyped-def]
        fn = getattr(ctx, leaf)
        op.values["ret"] = fn(slot, target, None if content else flags)
    return [lambda ctx: ctx.write(slot, Secinfo(flags=flags).pack()), run]


def op_eaccept(encl: TestEncl, tcs: int, target: int, flags: int) -> Operation:
    """ENCL_OP_EACCEPT: ENCLU[EACCEPT] with a SECINFO on the stack; RAX lands in ``ret``."""
    op = Operation("ENCL_OP_EACCEPT", [])
    op.steps = _secinfo_steps(encl, tcs, flags, "eaccept", target, op)
    return op


def op_emodpe(encl: TestEncl, tcs: int, target: int, flags: int) -> Operation:
    op = Operation("ENCL_OP_EMODPE", [])
    op.steps = _secinfo_steps(encl, tcs, flags, "emodpe", target, op)
    return op


def op_init_tcs_page(tcs_page: int, ssa: int, entry: int) -> Operation:
    """ENCL_OP_INIT_TCS_PAGE: write a TCS image (OSSA, NSSA = 1, OENTRY, FS/GS limits)."""
    image = tcs_image(ossa=ssa, nssa=1, oentry=entry)
    steps = [(lambda off: (lambda ctx: ctx.write(tcs_page + off, image[off:off + 512])))(o)
             for o in range(0, PAGE_SIZE, 512)]
    return Operation("ENCL_OP_INIT_TCS_PAGE", steps)
