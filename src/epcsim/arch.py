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
    # (sgx-arch.md §1.3 marks them [U]); the model accepts them but nothing depends on them.
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


# Results that set CF rather than ZF (sgx-arch.md §3): informational outcomes.
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


# Values measured into MRENCLAVE (sgx-arch.md §6.1), as little-endian u64 tags.
MEASURE_TAG_ECREATE = 0x0045544145524345  # "ECREATE\0"
MEASURE_TAG_EADD = 0x0000000044444145  # "EADD\0\0\0\0"
MEASURE_TAG_EEXTEND = 0x00444E4554584545  # "EEXTEND\0"

# Kernel constants (arch/x86/kernel/cpu/sgx/sgx.h) that the manager uses.
SGX_NR_TO_SCAN = 16
SGX_NR_LOW_PAGES = 32
SGX_NR_HIGH_PAGES = 64
SGX_NR_TO_SCAN_MAX = 32

