"""The processor's cryptography: the paging key, MRENCLAVE measurement and SIGSTRUCT RSA.

Everything here is deterministic given its inputs (a :class:`PagingKey` built without a seed
is the one exception, by design). References: Intel SDM vol. 3D (layouts).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import struct
from collections.abc import Iterable
from importlib import resources

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from epcsim.arch import (
    MEASURE_TAG_EADD,
    MEASURE_TAG_ECREATE,
    MEASURE_TAG_EEXTEND,
    PAGE_SIZE,
    SGX_EEXTEND_BLOCK_SIZE,
    SGX_MODULUS_SIZE,
    SGX_SECINFO_PAGE_TYPE_MASK,
    SGX_SECINFO_PAGE_TYPE_SHIFT,
    SGX_SECINFO_PERMISSION_MASK,
    SGX_SECINFO_STATE_MASK,
    SIGSTRUCT_HEADER,
    SIGSTRUCT_HEADER2,
    Attribute,
    PageType,
    SgxReturn,
    SigStruct,
)

MAC_HEADER_SIZE = 128
_U64 = (1 << 64) - 1
_MAC_TAG_SIZE = 16
SEALED_SIZE = PAGE_SIZE + _MAC_TAG_SIZE   # a sealed page as AES-GCM produces it: ciphertext, MAC
# The SECINFO subset that EWB copies into the PCMD and binds into the MAC (Intel SDM vol. 3D).
_MAC_SECINFO_MASK = (SGX_SECINFO_PAGE_TYPE_MASK | SGX_SECINFO_PERMISSION_MASK
                     | SGX_SECINFO_STATE_MASK)
_SIGSTRUCT_VENDORS = frozenset({0x0000, 0x8086})
_SIGSTRUCT_EXPONENT = 3
# DER DigestInfo prefix for SHA-256 in an EMSA-PKCS1-v1_5 encoding (RFC 8017 §9.2 note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _check_u64(name: str, value: int) -> None:
    if not 0 <= value <= _U64:
        raise ValueError(f"{name} {value:#x} is not a u64")


def mac_header(eid: int, linaddr: int, secinfo_flags: int) -> bytes:
    """Build the 128-byte AES-GCM AAD that binds an evicted page to its enclave and address.

    Layout: EID u64 @0, LINADDR u64 @8, SECINFO (64 B; FLAGS limited to page type, RWX,
    PENDING, MODIFIED and PR) @16, zero padding to 128 bytes. The offsets are not
    architectural; any fixed layout gives the same security properties.
    """
    _check_u64("eid", eid)
    _check_u64("linaddr", linaddr)
    # SECINFO is FLAGS (u64) then 56 reserved zero bytes: packed directly, as this runs for
    # every page sealed or opened.
    return struct.pack("<QQQ", eid, linaddr, int(secinfo_flags) & _MAC_SECINFO_MASK) + _PAD


_PAD = bytes(MAC_HEADER_SIZE - 24)


def _gcm_iv(version: int) -> bytes:
    _check_u64("version", version)
    return (version << 32).to_bytes(12, "little")


class PagingKey:
    """CR_BASE_PK: the per-boot paging key, known only to the processor model.

    EWB seals a page with AES-128-GCM under this key; ELDB/ELDU open it. The IV comes from the
    version kept in the VA slot, and the AAD is :func:`mac_header`, so a blob only opens at the
    same version, in the same enclave, at the same address and with the same SECINFO subset.
    A seed makes the key reproducible for tests; without one the key is random per instance
    (as it is per boot on hardware).
    """

    __slots__ = ("_aead",)

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            key = os.urandom(16)
        else:
            _check_u64("seed", seed)
            key = hashlib.sha256(b"epcsim-paging-key" + seed.to_bytes(8, "little")).digest()[:16]
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def seal(self, version: int, eid: int, linaddr: int, secinfo_flags: int,
             plaintext: bytes) -> tuple[bytes, bytes]:
        """Encrypt a 4096-byte page; return ``(ciphertext, mac)`` (4096 and 16 bytes)."""
        out = bytearray(SEALED_SIZE)
        self.seal_into(version, eid, linaddr, secinfo_flags, plaintext, out)
        return bytes(out[:PAGE_SIZE]), bytes(out[PAGE_SIZE:])

    def seal_into(self, version: int, eid: int, linaddr: int, secinfo_flags: int,
                  plaintext: bytes | memoryview, out: bytearray | memoryview) -> None:
        """:meth:`seal` into ``out``: the ciphertext, then the MAC (:data:`SEALED_SIZE`)."""
        if len(plaintext) != PAGE_SIZE:
            raise ValueError(f"plaintext must be {PAGE_SIZE} bytes, got {len(plaintext)}")
        self._aead.encrypt_into(_gcm_iv(version), plaintext,
                                mac_header(eid, linaddr, secinfo_flags), out)

    def open(self, version: int, eid: int, linaddr: int, secinfo_flags: int,
             ciphertext: bytes, mac: bytes) -> bytes | None:
        """Decrypt a sealed page; return None if the MAC does not verify.

        Ciphertext and MAC come from memory the OS controls, so any content (including a
        wrong length) yields None rather than an exception.
        """
        ok = len(ciphertext) == PAGE_SIZE and len(mac) == _MAC_TAG_SIZE
        out = bytearray(PAGE_SIZE)
        if not self.open_into(version, eid, linaddr, secinfo_flags,
                              bytes(ciphertext) + bytes(mac) if ok else b"", out):
            return None
        return bytes(out)

    def open_into(self, version: int, eid: int, linaddr: int, secinfo_flags: int,
                  sealed: bytes | memoryview, out: bytearray | memoryview) -> bool:
        """:meth:`open` of ``sealed`` (ciphertext then MAC) into ``out``; False if the MAC
        does not verify, and then ``out`` holds no plaintext to use."""
        iv = _gcm_iv(version)
        aad = mac_header(eid, linaddr, secinfo_flags)
        if len(sealed) != SEALED_SIZE:
            return False
        try:
            self._aead.decrypt_into(iv, sealed, aad, out)
        except InvalidTag:
            return False
        return True


class Measurement:
    """Running MRENCLAVE (SHA-256 over 64-byte records, Intel SDM vol. 3D).

    The hardware keeps this midstate and an update counter in the SECS between ECREATE and
    EINIT; ``finalize`` corresponds to EINIT's SHA-256 finalisation.
    """

    __slots__ = ("_blocks", "_hash")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._blocks = 0

    def _feed(self, data: bytes) -> None:
        self._hash.update(data)
        self._blocks += len(data) // 64

    def ecreate(self, ssaframesize: int, size: int) -> None:
        """Feed the ECREATE record: tag, SSAFRAMESIZE u32 @8, SIZE u64 @12."""
        _check_u64("size", size)
        if not 0 <= ssaframesize < (1 << 32):
            raise ValueError(f"ssaframesize {ssaframesize:#x} is not a u32")
        self._feed(struct.pack("<QIQ44x", MEASURE_TAG_ECREATE, ssaframesize, size))

    def eadd(self, offset: int, secinfo_flags: int) -> None:
        """Feed the EADD record: tag, page offset in ELRANGE, SECINFO bytes 0..47.

        The flags are measured as given; EADD itself clears RWX for a TCS page first.
        """
        _check_u64("offset", offset)
        _check_u64("secinfo_flags", secinfo_flags)
        self._feed(struct.pack("<QQQ40x", MEASURE_TAG_EADD, offset, secinfo_flags))

    def eextend(self, offset: int, chunk: bytes) -> None:
        """Feed one EEXTEND: a header record for ``offset``, then the 256-byte chunk."""
        _check_u64("offset", offset)
        if len(chunk) != SGX_EEXTEND_BLOCK_SIZE:
            raise ValueError(f"chunk must be {SGX_EEXTEND_BLOCK_SIZE} bytes, got {len(chunk)}")
        self._feed(struct.pack("<QQ48x", MEASURE_TAG_EEXTEND, offset))
        self._feed(bytes(chunk))

    @property
    def update_counter(self) -> int:
        """Number of 64-byte blocks fed so far."""
        return self._blocks

    def finalize(self) -> bytes:
        """Return the 32-byte MRENCLAVE of the records so far, leaving the state usable."""
        return self._hash.copy().digest()

    def copy(self) -> Measurement:
        """Return an independent copy of the running measurement."""
        other = Measurement.__new__(Measurement)
        other._hash = self._hash.copy()
        other._blocks = self._blocks
        return other


def mrenclave(ssaframesize: int, size: int,
              pages: Iterable[tuple[int, int, bytes | None]]) -> bytes:
    """Compute MRENCLAVE offline, as a signing tool does.

    ``pages`` yields ``(offset, secinfo_flags, data)`` in EADD order; RWX is cleared for TCS
    pages, and a page whose ``data`` is not None is measured with 16 EEXTENDs of 256 bytes.
    """
    m = Measurement()
    m.ecreate(ssaframesize, size)
    for offset, flags, data in pages:
        page_type = (flags & SGX_SECINFO_PAGE_TYPE_MASK) >> SGX_SECINFO_PAGE_TYPE_SHIFT
        if page_type == PageType.TCS:
            flags &= ~SGX_SECINFO_PERMISSION_MASK
        m.eadd(offset, flags)
        if data is not None:
            if len(data) != PAGE_SIZE:
                raise ValueError(f"page data must be {PAGE_SIZE} bytes, got {len(data)}")
            for c in range(0, PAGE_SIZE, SGX_EEXTEND_BLOCK_SIZE):
                m.eextend(offset + c, data[c:c + SGX_EEXTEND_BLOCK_SIZE])
    return m.finalize()


def mrsigner(modulus_le: bytes) -> bytes:
    """MRSIGNER: SHA-256 of the 384-byte modulus exactly as stored in SIGSTRUCT (little-endian)."""
    if len(modulus_le) != SGX_MODULUS_SIZE:
        raise ValueError(f"modulus must be {SGX_MODULUS_SIZE} bytes, got {len(modulus_le)}")
    return hashlib.sha256(modulus_le).digest()


@functools.cache
def test_signing_key() -> rsa.RSAPrivateKey:
    """Return the fixed RSA-3072 (e = 3) test signing key shipped with the package.

    This is a TEST key, published in the source tree like the kernel selftests'
    ``sign_key.pem``: it exists so enclaves built by tests have a stable MRSIGNER. It protects
    nothing.
    """
    pem = resources.files(__package__).joinpath("test_signing_key.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("test_signing_key.pem does not hold an RSA private key")
    return key


# The name starts with "test_"; stop pytest from collecting it when a test module imports it.
test_signing_key.__test__ = False  # type: ignore[attr-defined]


def _signed_bytes(packed: bytes) -> bytes:
    return packed[0:128] + packed[900:1028]


def sign_sigstruct(mrenclave: bytes, *, key: rsa.RSAPrivateKey | None = None,
                   vendor: int = 0, date: int = 0x20261125, swdefined: int = 0,
                   miscselect: int = 0, miscmask: int = 0xFFFFFFFF,
                   attributes: int = int(Attribute.MODE64BIT), xfrm: int = 3,
                   attributemask: int = _U64, xfrmmask: int = _U64,
                   isvfamilyid: bytes = bytes(16), isvextprodid: bytes = bytes(16),
                   isvprodid: int = 0, isvsvn: int = 0) -> bytes:
    """Build and sign a 1808-byte SIGSTRUCT whose ENCLAVEHASH is ``mrenclave``.

    Mirrors the kernel selftests' ``sigstruct.c``: RSA-3072 PKCS#1 v1.5 with SHA-256 over the
    256 signed bytes (header ``[0,128)`` and body ``[900,1028)``), MODULUS and SIGNATURE stored
    byte-reversed (little-endian), and Q1/Q2 so the verifier needs only multiplications.
    ``key`` defaults to :func:`test_signing_key`; it must be a 3072-bit key with e = 3.
    """
    if key is None:
        key = test_signing_key()
    pub = key.public_key().public_numbers()
    if key.key_size != SGX_MODULUS_SIZE * 8 or pub.e != _SIGSTRUCT_EXPONENT:
        raise ValueError("SIGSTRUCT needs an RSA-3072 key with public exponent 3")
    n = pub.n
    unsigned = SigStruct(
        vendor=vendor, date=date, swdefined=swdefined,
        modulus=n.to_bytes(SGX_MODULUS_SIZE, "little"), exponent=_SIGSTRUCT_EXPONENT,
        miscselect=miscselect, miscmask=miscmask, isvfamilyid=isvfamilyid,
        attributes=attributes, xfrm=xfrm, attributemask=attributemask, xfrmmask=xfrmmask,
        enclavehash=mrenclave, isvextprodid=isvextprodid, isvprodid=isvprodid, isvsvn=isvsvn,
    )
    sig_be = key.sign(_signed_bytes(unsigned.pack()), padding.PKCS1v15(), hashes.SHA256())
    s = int.from_bytes(sig_be, "big")
    q1 = s * s // n
    q2 = (s * s * s - q1 * s * n) // n
    signed = dataclasses.replace(
        unsigned,
        signature=s.to_bytes(SGX_MODULUS_SIZE, "little"),
        q1=q1.to_bytes(SGX_MODULUS_SIZE, "little"),
        q2=q2.to_bytes(SGX_MODULUS_SIZE, "little"),
    )
    return signed.pack()


def _emsa_pkcs1_v15_sha256(message: bytes) -> int:
    t = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    em = b"\x00\x01" + b"\xff" * (SGX_MODULUS_SIZE - len(t) - 3) + b"\x00" + t
    return int.from_bytes(em, "big")


def verify_sigstruct(sigstruct: bytes) -> int:
    """Return EINIT's verdict on a SIGSTRUCT's own fields and signature.

    SGX_INVALID_SIG_STRUCT for a wrong HEADER, HEADER2, VENDOR (not 0 or 0x8086), EXPONENT
    (not 3) or nonzero reserved bytes; SGX_INVALID_SIGNATURE when the signature, checked the
    hardware's way through Q1 and Q2, does not verify; SGX_SUCCESS otherwise. Any 1808 bytes
    yield a verdict; another length raises ValueError.
    """
    sig = SigStruct.unpack(sigstruct)
    if (sig.header != SIGSTRUCT_HEADER
            or sig.header2 != SIGSTRUCT_HEADER2
            or sig.vendor not in _SIGSTRUCT_VENDORS
            or sig.exponent != _SIGSTRUCT_EXPONENT
            or sig.reserved_nonzero()):
        return SgxReturn.SGX_INVALID_SIG_STRUCT
    n = int.from_bytes(sig.modulus, "little")
    s = int.from_bytes(sig.signature, "little")
    q1 = int.from_bytes(sig.q1, "little")
    q2 = int.from_bytes(sig.q2, "little")
    # S^3 mod N from S, Q1, Q2 with multiplications only: each remainder must land in [0, N),
    # which pins Q1 and Q2 to the true quotients.
    r1 = s * s - q1 * n
    if not (s < n and 0 <= r1 < n):
        return SgxReturn.SGX_INVALID_SIGNATURE
    r2 = s * r1 - q2 * n
    if not 0 <= r2 < n:
        return SgxReturn.SGX_INVALID_SIGNATURE
    if r2 != _emsa_pkcs1_v15_sha256(_signed_bytes(bytes(sigstruct))):
        return SgxReturn.SGX_INVALID_SIGNATURE
    return SgxReturn.SGX_SUCCESS
