"""Architectural constants of SGX: page types, SECINFO flags, leaf numbers, error codes.

The kernel keeps these in ``arch/x86/include/asm/sgx.h``; the SDM (Vol. 3D) defines them.
The byte-exact layouts of the architectural structures follow the constants below.

Every value here is named once; the rest of epcsim imports it from here.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

PAGE_SIZE = 4096
PAGE_SHIFT = 12

SGX_MAX_EPC_SECTIONS = 8
SGX_EEXTEND_BLOCK_SIZE = 256
SGX_VA_SLOT_COUNT = 512
SGX_MODULUS_SIZE = 384
SGX_LAUNCH_TOKEN_SIZE = 304
SGX_SSA_GPRS_SIZE = 184
SGX_SSA_MISC_EXINFO_SIZE = 16
SGX_TCS_RESERVED_SIZE = 4024
SGX_PCMD_RESERVED_SIZE = 40

# Linux marks "ENCLS faulted" by OR-ing this into the trap number (encls.h).
SGX_ENCLS_FAULT_FLAG = 0x40000000

# Exception vectors the leaves can raise.
X86_TRAP_UD = 6
X86_TRAP_GP = 13
X86_TRAP_PF = 14

# #PF error-code bits (arch/x86/include/asm/trap_pf.h).
X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_INSTR = 1 << 4
X86_PF_SGX = 1 << 15


class PageType(IntEnum):
    """``enum sgx_page_type``; SECINFO.FLAGS bits 15:8."""

    SECS = 0
    TCS = 1
    REG = 2
    VA = 3
    TRIM = 4
    # Numeric values of the CET shadow-stack types are not confirmed by a read source
    # (their use is unconfirmed); the model accepts them but nothing depends on them.
    SS_FIRST = 5
    SS_REST = 6


class SecinfoFlags(IntFlag):
    """SECINFO.FLAGS bits (SDM Vol. 3D; kernel ``enum sgx_secinfo_flags``)."""

    R = 1 << 0
    W = 1 << 1
    X = 1 << 2
    PENDING = 1 << 3
    MODIFIED = 1 << 4
    PR = 1 << 5


SGX_SECINFO_PERMISSION_MASK = 0x7
SGX_SECINFO_STATE_MASK = 0x38
SGX_SECINFO_PAGE_TYPE_SHIFT = 8
SGX_SECINFO_PAGE_TYPE_MASK = 0xFF << SGX_SECINFO_PAGE_TYPE_SHIFT
# Bits of SECINFO.FLAGS that must be zero: 7:6 and 63:16.
SGX_SECINFO_RESERVED_MASK = ~(SGX_SECINFO_PERMISSION_MASK | SGX_SECINFO_STATE_MASK
                              | SGX_SECINFO_PAGE_TYPE_MASK) & 0xFFFFFFFFFFFFFFFF


def secinfo_flags(page_type: int, perms: int = 0, state: int = 0) -> int:
    """Build a SECINFO.FLAGS word from a page type, R/W/X bits and state bits."""
    return (int(page_type) << SGX_SECINFO_PAGE_TYPE_SHIFT) | int(perms) | int(state)


class Attribute(IntFlag):
    """SECS.ATTRIBUTES.FLAGS bits."""

    INIT = 1 << 0
    DEBUG = 1 << 1
    MODE64BIT = 1 << 2
    PROVISIONKEY = 1 << 4
    EINITTOKENKEY = 1 << 5
    CET = 1 << 6
    KSS = 1 << 7
    AEXNOTIFY = 1 << 10


SGX_ATTR_RESERVED_MASK = (1 << 3) | (1 << 8) | (1 << 9) | (0xFFFFFFFFFFFFFFFF & ~0x7FF)
# Attributes that software may set in ECREATE (CPUID.(12H,1) of the modelled part).
SGX_ATTR_ALLOWED_MASK = (Attribute.DEBUG | Attribute.MODE64BIT | Attribute.PROVISIONKEY
                         | Attribute.EINITTOKENKEY | Attribute.KSS)
SGX_MISC_EXINFO = 1 << 0
SGX_XFRM_LEGACY = 0x3


class Encls(IntEnum):
    """ENCLS leaf numbers (``enum sgx_encls_function``; SDM for 0x10-0x13)."""

    ECREATE = 0x00
    EADD = 0x01
    EINIT = 0x02
    EREMOVE = 0x03
    EDBGRD = 0x04
    EDBGWR = 0x05
    EEXTEND = 0x06
    ELDB = 0x07
    ELDU = 0x08
    EBLOCK = 0x09
    EPA = 0x0A
    EWB = 0x0B
    ETRACK = 0x0C
    EAUG = 0x0D
    EMODPR = 0x0E
    EMODT = 0x0F
    ERDINFO = 0x10
    ETRACKC = 0x11
    ELDBC = 0x12
    ELDUC = 0x13
    EUPDATESVN = 0x18


class Enclu(IntEnum):
    """ENCLU leaf numbers."""

    EREPORT = 0x0
    EGETKEY = 0x1
    EENTER = 0x2
    ERESUME = 0x3
    EEXIT = 0x4
    EACCEPT = 0x5
    EMODPE = 0x6
    EACCEPTCOPY = 0x7
    EVERIFYREPORT2 = 0x8
    EDECCSSA = 0x9
    EREPORT2 = 0xA
    EGETKEY256 = 0xB


class Enclv(IntEnum):
    """ENCLV leaf numbers (VMX root only)."""

    EDECVIRTCHILD = 0x0
    EINCVIRTCHILD = 0x1
    ESETCONTEXT = 0x2


class SgxReturn(IntEnum):
    """Architectural return codes in RAX (``sgx_errno.h`` and the SDM)."""

    SGX_SUCCESS = 0
    SGX_INVALID_SIG_STRUCT = 1
    SGX_INVALID_ATTRIBUTE = 2
    SGX_BLKSTATE = 3
    SGX_INVALID_MEASUREMENT = 4
    SGX_NOTBLOCKABLE = 5
    SGX_PG_INVLD = 6
    SGX_EPC_PAGE_CONFLICT = 7
    SGX_INVALID_SIGNATURE = 8
    SGX_MAC_COMPARE_FAIL = 9
    SGX_PAGE_NOT_BLOCKED = 10
    SGX_NOT_TRACKED = 11
    SGX_VA_SLOT_OCCUPIED = 12
    SGX_CHILD_PRESENT = 13
    SGX_ENCLAVE_ACT = 14
    SGX_ENTRYEPOCH_LOCKED = 15
    SGX_INVALID_EINITTOKEN = 16
    SGX_PREV_TRK_INCMPL = 17
    SGX_PG_IS_SECS = 18
    SGX_PAGE_ATTRIBUTES_MISMATCH = 19
    SGX_PAGE_NOT_MODIFIABLE = 20
    SGX_PAGE_NOT_DEBUGGABLE = 21
    SGX_INVALID_COUNTER = 25
    SGX_PG_NONEPC = 26
    SGX_TRACK_NOT_REQUIRED = 27
    SGX_INSUFFICIENT_ENTROPY = 29
    SGX_EPC_NOT_READY = 30
    SGX_NO_UPDATE = 31
    SGX_INVALID_CPUSVN = 32
    SGX_INVALID_ISVSVN = 64
    SGX_UNMASKED_EVENT = 128
    SGX_INVALID_KEYNAME = 256


# Results that set CF rather than ZF (Intel SDM vol. 3D): informational outcomes.
SGX_CF_RESULTS = frozenset({
    SgxReturn.SGX_BLKSTATE, SgxReturn.SGX_PG_IS_SECS, SgxReturn.SGX_NOTBLOCKABLE,
    SgxReturn.SGX_VA_SLOT_OCCUPIED, SgxReturn.SGX_PG_NONEPC, SgxReturn.SGX_TRACK_NOT_REQUIRED,
})

# VM-exit reason for a guest leaf that collides with a host-held EPC resource.
EXIT_REASON_SGX_CONFLICT = 71


class SgxConflictQualification(IntEnum):
    TRACKING_RESOURCE_CONFLICT = 0
    TRACKING_REFERENCE_CONFLICT = 1
    EPC_PAGE_CONFLICT_EXCEPTION = 2
    EPC_PAGE_CONFLICT_ERROR = 3


# Values measured into MRENCLAVE (Intel SDM vol. 3D), as little-endian u64 tags.
MEASURE_TAG_ECREATE = 0x0045544145524345  # "ECREATE\0"
MEASURE_TAG_EADD = 0x0000000044444145  # "EADD\0\0\0\0"
MEASURE_TAG_EEXTEND = 0x00444E4554584545  # "EEXTEND\0"

# Kernel constants (arch/x86/kernel/cpu/sgx/sgx.h) that the manager uses.
SGX_NR_TO_SCAN = 16
SGX_NR_LOW_PAGES = 32
SGX_NR_HIGH_PAGES = 64
SGX_NR_TO_SCAN_MAX = 32



# ---------------------------------------------------------------------------------------------
# Byte layouts
#
# Each structure is a frozen dataclass whose byte image is described by a ``_TABLE`` of
# (field name, offset, kind) rows in offset order, copied from Intel SDM vol. 3D. ``kind`` is a
# ``struct`` code ("H", "I", "Q"), a byte count, or a nested layout class. A row whose name is
# None is a reserved region: its bytes come from the ``reserved`` field (the regions
# concatenated in offset order) where the class has one, and are zero otherwise. Keeping the
# reserved bytes lets the leaves reject structures with nonzero reserved bytes, as the
# hardware does for SECINFO, SECS, TCS, SIGSTRUCT and a valid EINITTOKEN.
# ---------------------------------------------------------------------------------------------

import struct  # noqa: E402
from dataclasses import dataclass, field, fields  # noqa: E402
from typing import Any, ClassVar, Self  # noqa: E402

_Kind = str | int | type
_Row = tuple[str | None, int, _Kind]
_INT_BITS = {"H": 16, "I": 32, "Q": 64}

SIGSTRUCT_HEADER = bytes.fromhex("06000000E10000000000010000000000")
SIGSTRUCT_HEADER2 = bytes.fromhex("01010000600000006000000001000000")


def _kind_size(kind: _Kind) -> int:
    if isinstance(kind, str):
        return _INT_BITS[kind] // 8
    if isinstance(kind, int):
        return kind
    return kind.SIZE  # type: ignore[attr-defined]


class _Layout:
    """Shared pack/unpack/validation for the fixed-size architectural structures."""

    __slots__ = ()
    SIZE: ClassVar[int]
    ALIGN: ClassVar[int]
    _TABLE: ClassVar[tuple[_Row, ...]]

    @classmethod
    def _reserved_size(cls) -> int:
        return sum(_kind_size(kind) for name, _, kind in cls._TABLE if name is None)

    def __post_init__(self) -> None:
        for name, _, kind in self._TABLE:
            if name is None:
                continue
            value = getattr(self, name)
            if isinstance(kind, str):
                if not isinstance(value, int) or not 0 <= value < (1 << _INT_BITS[kind]):
                    raise ValueError(f"{type(self).__name__}.{name}: {value!r} is not a "
                                     f"u{_INT_BITS[kind]}")
            elif isinstance(kind, int):
                self._check_bytes(name, value, kind)
            elif not isinstance(value, kind):
                raise ValueError(f"{type(self).__name__}.{name} must be a {kind.__name__}")
        if hasattr(self, "reserved"):
            self._check_bytes("reserved", self.reserved, self._reserved_size())

    def _check_bytes(self, name: str, value: Any, length: int) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"{type(self).__name__}.{name} must be bytes")
        value = bytes(value)
        if len(value) != length:
            raise ValueError(f"{type(self).__name__}.{name} must be {length} bytes, "
                             f"got {len(value)}")
        # Frozen: normalise bytearray/memoryview to bytes so instances stay hashable.
        object.__setattr__(self, name, value)

    def pack(self) -> bytes:
        """Return the structure's exact little-endian byte image (``SIZE`` bytes)."""
        buf = bytearray(self.SIZE)
        reserved = getattr(self, "reserved", None)
        rpos = 0
        for name, off, kind in self._TABLE:
            n = _kind_size(kind)
            if name is None:
                if reserved is not None:
                    buf[off:off + n] = reserved[rpos:rpos + n]
                rpos += n
            elif isinstance(kind, str):
                struct.pack_into("<" + kind, buf, off, getattr(self, name))
            elif isinstance(kind, int):
                buf[off:off + n] = getattr(self, name)
            else:
                buf[off:off + n] = getattr(self, name).pack()
        return bytes(buf)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        """Parse exactly ``SIZE`` bytes; raise ValueError on any other length."""
        data = bytes(data)
        if len(data) != cls.SIZE:
            raise ValueError(f"{cls.__name__} is {cls.SIZE} bytes, got {len(data)}")
        values: dict[str, Any] = {}
        reserved = bytearray()
        for name, off, kind in cls._TABLE:
            n = _kind_size(kind)
            if name is None:
                reserved += data[off:off + n]
            elif isinstance(kind, str):
                (values[name],) = struct.unpack_from("<" + kind, data, off)
            elif isinstance(kind, int):
                values[name] = data[off:off + n]
            else:
                values[name] = kind.unpack(data[off:off + n])  # type: ignore[attr-defined]
        if any(f.name == "reserved" for f in fields(cls)):  # type: ignore[arg-type]
            values["reserved"] = bytes(reserved)
        return cls(**values)


class _ReservedChecked(_Layout):
    __slots__ = ()

    def reserved_nonzero(self) -> bool:
        """True when any reserved byte is set (the hardware rejects such a structure)."""
        return any(self.reserved)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Secinfo(_ReservedChecked):
    """SECINFO (64 B): FLAGS u64, then 56 reserved bytes that must be zero."""

    SIZE: ClassVar[int] = 64
    ALIGN: ClassVar[int] = 64
    _TABLE: ClassVar[tuple[_Row, ...]] = (("flags", 0, "Q"), (None, 8, 56))

    flags: int = 0
    reserved: bytes = field(default=bytes(56), repr=False)


@dataclass(frozen=True, slots=True)
class PageInfo(_Layout):
    """PAGEINFO (32 B): LINADDR, SRCPGE, SECINFO-or-PCMD address (``metadata``), SECS."""

    SIZE: ClassVar[int] = 32
    ALIGN: ClassVar[int] = 32
    _TABLE: ClassVar[tuple[_Row, ...]] = (
        ("linaddr", 0, "Q"), ("srcpge", 8, "Q"), ("metadata", 16, "Q"), ("secs", 24, "Q"),
    )

    linaddr: int = 0
    srcpge: int = 0
    metadata: int = 0
    secs: int = 0


@dataclass(frozen=True, slots=True)
class Pcmd(_ReservedChecked):
    """PCMD (128 B): SECINFO copy, ENCLAVEID, 40 reserved bytes, 16-byte MAC."""

    SIZE: ClassVar[int] = 128
    ALIGN: ClassVar[int] = 128
    _TABLE: ClassVar[tuple[_Row, ...]] = (
        ("secinfo", 0, Secinfo), ("enclave_id", 64, "Q"), (None, 72, SGX_PCMD_RESERVED_SIZE),
        ("mac", 112, 16),
    )

    secinfo: Secinfo = Secinfo()
    enclave_id: int = 0
    mac: bytes = bytes(16)
    reserved: bytes = field(default=bytes(SGX_PCMD_RESERVED_SIZE), repr=False)


@dataclass(frozen=True, slots=True)
class Secs(_ReservedChecked):
    """SECS (4096 B): the enclave control structure; ``attributes`` is ATTRIBUTES.FLAGS."""

    SIZE: ClassVar[int] = PAGE_SIZE
    ALIGN: ClassVar[int] = PAGE_SIZE
    _TABLE: ClassVar[tuple[_Row, ...]] = (
        ("size", 0, "Q"), ("baseaddr", 8, "Q"), ("ssaframesize", 16, "I"),
        ("miscselect", 20, "I"), (None, 24, 24), ("attributes", 48, "Q"), ("xfrm", 56, "Q"),
        ("mrenclave", 64, 32), (None, 96, 32), ("mrsigner", 128, 32), (None, 160, 32),
        ("configid", 192, 64), ("isvprodid", 256, "H"), ("isvsvn", 258, "H"),
        ("configsvn", 260, "H"), (None, 262, 3834),
    )

    size: int = 0
    baseaddr: int = 0
    ssaframesize: int = 0
    miscselect: int = 0
    attributes: int = 0
    xfrm: int = 0
    mrenclave: bytes = bytes(32)
    mrsigner: bytes = bytes(32)
    configid: bytes = bytes(64)
    isvprodid: int = 0
    isvsvn: int = 0
    configsvn: int = 0
    reserved: bytes = field(default=bytes(24 + 32 + 32 + 3834), repr=False)


@dataclass(frozen=True, slots=True)
class Tcs(_ReservedChecked):
    """TCS (4096 B): thread control structure; ``flags`` bit 0 is DBGOPTIN."""

    SIZE: ClassVar[int] = PAGE_SIZE
    ALIGN: ClassVar[int] = PAGE_SIZE
    _TABLE: ClassVar[tuple[_Row, ...]] = (
        ("state", 0, "Q"), ("flags", 8, "Q"), ("ossa", 16, "Q"), ("cssa", 24, "I"),
        ("nssa", 28, "I"), ("oentry", 32, "Q"), ("aep", 40, "Q"), ("ofsbase", 48, "Q"),
        ("ogsbase", 56, "Q"), ("fslimit", 64, "I"), ("gslimit", 68, "I"),
        (None, 72, SGX_TCS_RESERVED_SIZE),
    )

    state: int = 0
    flags: int = 0
    ossa: int = 0
    cssa: int = 0
    nssa: int = 0
    oentry: int = 0
    aep: int = 0
    ofsbase: int = 0
    ogsbase: int = 0
    fslimit: int = 0
    gslimit: int = 0
    reserved: bytes = field(default=bytes(SGX_TCS_RESERVED_SIZE), repr=False)


@dataclass(frozen=True, slots=True)
class SigStruct(_ReservedChecked):
    """SIGSTRUCT (1808 B). MODULUS, SIGNATURE, Q1 and Q2 are stored little-endian.

    ``attributes``/``xfrm`` and ``attributemask``/``xfrmmask`` are the two u64 halves of
    ATTRIBUTES and ATTRIBUTEMASK. The signed bytes are ``[0, 128)`` and ``[900, 1028)``.
    """

    SIZE: ClassVar[int] = 1808
    ALIGN: ClassVar[int] = PAGE_SIZE
    _TABLE: ClassVar[tuple[_Row, ...]] = (
        ("header", 0, 16), ("vendor", 16, "I"), ("date", 20, "I"), ("header2", 24, 16),
        ("swdefined", 40, "I"), (None, 44, 84), ("modulus", 128, SGX_MODULUS_SIZE),
        ("exponent", 512, "I"), ("signature", 516, SGX_MODULUS_SIZE),
        ("miscselect", 900, "I"), ("miscmask", 904, "I"), (None, 908, 4),
        ("isvfamilyid", 912, 16), ("attributes", 928, "Q"), ("xfrm", 936, "Q"),
        ("attributemask", 944, "Q"), ("xfrmmask", 952, "Q"), ("enclavehash", 960, 32),
        (None, 992, 16), ("isvextprodid", 1008, 16), ("isvprodid", 1024, "H"),
        ("isvsvn", 1026, "H"), (None, 1028, 12), ("q1", 1040, SGX_MODULUS_SIZE),
        ("q2", 1424, SGX_MODULUS_SIZE),
    )

    header: bytes = SIGSTRUCT_HEADER
    vendor: int = 0
    date: int = 0
    header2: bytes = SIGSTRUCT_HEADER2
    swdefined: int = 0
    modulus: bytes = bytes(SGX_MODULUS_SIZE)
    exponent: int = 3
    signature: bytes = bytes(SGX_MODULUS_SIZE)
    miscselect: int = 0
    miscmask: int = 0
    isvfamilyid: bytes = bytes(16)
    attributes: int = 0
    xfrm: int = 0
    attributemask: int = 0
    xfrmmask: int = 0
    enclavehash: bytes = bytes(32)
    isvextprodid: bytes = bytes(16)
    isvprodid: int = 0
    isvsvn: int = 0
    q1: bytes = bytes(SGX_MODULUS_SIZE)
    q2: bytes = bytes(SGX_MODULUS_SIZE)
    reserved: bytes = field(default=bytes(84 + 4 + 16 + 12), repr=False)


@dataclass(frozen=True, slots=True)
class EinitToken(_ReservedChecked):
    """EINITTOKEN (304 B); the CMAC in ``mac`` covers bytes ``[0, 192)``.

    ``attributes``/``xfrm`` are ATTRIBUTES; ``maskedattributesle``/``maskedxfrmle`` are the two
    halves of MASKEDATTRIBUTESLE.
    """

    SIZE: ClassVar[int] = SGX_LAUNCH_TOKEN_SIZE
    ALIGN: ClassVar[int] = 512
    _TABLE: ClassVar[tuple[_Row, ...]] = (
        ("valid", 0, "I"), (None, 4, 44), ("attributes", 48, "Q"), ("xfrm", 56, "Q"),
        ("mrenclave", 64, 32), (None, 96, 32), ("mrsigner", 128, 32), (None, 160, 32),
        ("cpusvnle", 192, 16), ("isvprodidle", 208, "H"), ("isvsvnle", 210, "H"),
        (None, 212, 24), ("maskedmiscselectle", 236, "I"), ("maskedattributesle", 240, "Q"),
        ("maskedxfrmle", 248, "Q"), ("keyid", 256, 32), ("mac", 288, 16),
    )

    valid: int = 0
    attributes: int = 0
    xfrm: int = 0
    mrenclave: bytes = bytes(32)
    mrsigner: bytes = bytes(32)
    cpusvnle: bytes = bytes(16)
    isvprodidle: int = 0
    isvsvnle: int = 0
    maskedmiscselectle: int = 0
    maskedattributesle: int = 0
    maskedxfrmle: int = 0
    keyid: bytes = bytes(32)
    mac: bytes = bytes(16)
    reserved: bytes = field(default=bytes(44 + 32 + 32 + 24), repr=False)


@dataclass(frozen=True, slots=True)
class RdInfo(_Layout):
    """RDINFO (32 B): ERDINFO's output; the last 8 bytes are reserved and written as zero."""

    SIZE: ClassVar[int] = 32
    ALIGN: ClassVar[int] = 32
    _TABLE: ClassVar[tuple[_Row, ...]] = (
        ("status", 0, "Q"), ("flags", 8, "Q"), ("enclavecontext", 16, "Q"), (None, 24, 8),
    )

    status: int = 0
    flags: int = 0
    enclavecontext: int = 0


def _check_table(cls: type[_Layout]) -> None:
    # A typo in an offset would silently shift every later field; refuse to import instead.
    pos = 0
    for _, off, kind in cls._TABLE:
        if off != pos:
            raise AssertionError(f"{cls.__name__}: gap or overlap at offset {off}")
        pos += _kind_size(kind)
    if pos != cls.SIZE:
        raise AssertionError(f"{cls.__name__}: rows cover {pos} bytes, SIZE is {cls.SIZE}")
    named = {name for name, _, _ in cls._TABLE if name is not None}
    declared = {f.name for f in fields(cls)} - {"reserved"}  # type: ignore[arg-type]
    if named != declared:
        raise AssertionError(f"{cls.__name__}: table/fields mismatch {named ^ declared}")


for _layout_cls in (Secinfo, PageInfo, Pcmd, Secs, Tcs, SigStruct, EinitToken, RdInfo):
    _check_table(_layout_cls)
del _layout_cls
