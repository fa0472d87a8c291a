"""The processor's cryptography: paging-key sealing, MRENCLAVE and SIGSTRUCT signing."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given
from hypothesis import strategies as st

from epcsim.arch import (
    SIGSTRUCT_HEADER,
    PageType,
    SecinfoFlags,
    SgxReturn,
    SigStruct,
    secinfo_flags,
)
from epcsim.hw import crypto

# --- MAC header and paging key --------------------------------------------------------------

EID = 0x1234_5678_9ABC_DEF0
LINADDR = 0x7F00_0000_3000
FLAGS = secinfo_flags(PageType.REG, SecinfoFlags.R | SecinfoFlags.W)
VERSION = 0x42


def _page(tag: int) -> bytes:
    return bytes((tag + i * 7) & 0xFF for i in range(4096))


def test_mac_header_layout():
    flags = FLAGS | SecinfoFlags.PENDING | SecinfoFlags.MODIFIED | SecinfoFlags.PR
    hdr = crypto.mac_header(EID, LINADDR, flags | (1 << 6) | (1 << 40))
    assert len(hdr) == crypto.MAC_HEADER_SIZE == 128
    assert struct.unpack_from("<QQQ", hdr, 0) == (EID, LINADDR, flags)  # reserved bits dropped
    assert hdr[24:] == bytes(104)


@pytest.fixture
def key():
    return crypto.PagingKey(seed=7)


def test_seal_open_round_trip(key):
    plain = _page(1)
    ct, mac = key.seal(VERSION, EID, LINADDR, FLAGS, plain)
    assert len(ct) == 4096 and len(mac) == 16
    assert ct != plain
    assert key.open(VERSION, EID, LINADDR, FLAGS, ct, mac) == plain


def test_seal_is_deterministic_given_seed():
    a = crypto.PagingKey(seed=7).seal(VERSION, EID, LINADDR, FLAGS, _page(2))
    b = crypto.PagingKey(seed=7).seal(VERSION, EID, LINADDR, FLAGS, _page(2))
    c = crypto.PagingKey(seed=8).seal(VERSION, EID, LINADDR, FLAGS, _page(2))
    assert a == b
    assert a != c


def test_unseeded_keys_differ():
    ct, mac = crypto.PagingKey().seal(VERSION, EID, LINADDR, FLAGS, _page(3))
    assert crypto.PagingKey().open(VERSION, EID, LINADDR, FLAGS, ct, mac) is None


def test_key_is_not_exposed_by_repr(key):
    assert "seed" not in repr(key) and len(repr(key)) < 40


@pytest.mark.parametrize("bit", [0, 7, 8 * 2048 + 3, 8 * 4096 - 1])
def test_flipped_ciphertext_bit_fails(key, bit):
    ct, mac = key.seal(VERSION, EID, LINADDR, FLAGS, _page(4))
    bad = bytearray(ct)
    bad[bit // 8] ^= 1 << (bit % 8)
    assert key.open(VERSION, EID, LINADDR, FLAGS, bytes(bad), mac) is None


@pytest.mark.parametrize("bit", [0, 64, 127])
def test_flipped_mac_bit_fails(key, bit):
    ct, mac = key.seal(VERSION, EID, LINADDR, FLAGS, _page(5))
    bad = bytearray(mac)
    bad[bit // 8] ^= 1 << (bit % 8)
    assert key.open(VERSION, EID, LINADDR, FLAGS, ct, bytes(bad)) is None


@pytest.mark.parametrize("change", [
    {"version": VERSION + 1},
    {"eid": EID + 1},
    {"linaddr": LINADDR + 4096},
    {"secinfo_flags": FLAGS | SecinfoFlags.X},          # more permissions
    {"secinfo_flags": secinfo_flags(PageType.TCS)},     # another page type
    {"secinfo_flags": FLAGS | SecinfoFlags.PENDING},    # another state
], ids=["version", "eid", "linaddr", "perms", "type", "state"])
def test_changed_metadata_fails(key, change):
    ct, mac = key.seal(VERSION, EID, LINADDR, FLAGS, _page(6))
    args = {"version": VERSION, "eid": EID, "linaddr": LINADDR, "secinfo_flags": FLAGS}
    args.update(change)
    assert key.open(args["version"], args["eid"], args["linaddr"], args["secinfo_flags"],
                    ct, mac) is None


def test_open_wrong_length_returns_none(key):
    ct, mac = key.seal(VERSION, EID, LINADDR, FLAGS, _page(7))
    assert key.open(VERSION, EID, LINADDR, FLAGS, ct[:-1], mac) is None
    assert key.open(VERSION, EID, LINADDR, FLAGS, ct, mac[:8]) is None


def test_seal_rejects_wrong_page_size(key):
    with pytest.raises(ValueError):
        key.seal(VERSION, EID, LINADDR, FLAGS, bytes(4095))


_SEALED = crypto.PagingKey(seed=1).seal(VERSION, EID, LINADDR, FLAGS, _page(8))


@given(st.dictionaries(st.integers(0, 4096 + 16 - 1), st.integers(1, 255), min_size=1,
                       max_size=16))
def test_any_tampering_returns_none(xors):
    blob = bytearray(_SEALED[0] + _SEALED[1])
    for pos, x in xors.items():
        blob[pos] ^= x
    key = crypto.PagingKey(seed=1)
    assert key.open(VERSION, EID, LINADDR, FLAGS, bytes(blob[:4096]), bytes(blob[4096:])) is None


# --- MRENCLAVE -------------------------------------------------------------------------------

TCS_FLAGS = (PageType.TCS << 8) | 0x3
RX_FLAGS = (PageType.REG << 8) | 0x5
RW_FLAGS = (PageType.REG << 8) | 0x3
SSAFRAMESIZE = 1
ENCL_SIZE = 0x8000


def _independent_mrenclave(tcs_data: bytes, rx_data: bytes) -> bytes:
    """MRENCLAVE from the record format in Intel SDM vol. 3D alone."""
    blocks = [b"ECREATE\0" + struct.pack("<IQ", SSAFRAMESIZE, ENCL_SIZE) + bytes(44)]

    def eadd(offset: int, flags: int) -> None:
        blocks.append(b"EADD\0\0\0\0" + struct.pack("<QQ", offset, flags) + bytes(40))

    def eextend_page(offset: int, data: bytes) -> None:
        for c in range(0, 4096, 256):
            blocks.append(b"EEXTEND\0" + struct.pack("<Q", offset + c) + bytes(48))
            blocks.extend(data[c + i:c + i + 64] for i in range(0, 256, 64))

    eadd(0x0000, PageType.TCS << 8)          # RWX cleared for TCS
    eextend_page(0x0000, tcs_data)
    eadd(0x1000, RX_FLAGS)
    eextend_page(0x1000, rx_data)
    eadd(0x2000, RW_FLAGS)                    # added but not measured
    assert all(len(b) == 64 for b in blocks)
    return hashlib.sha256(b"".join(blocks)).digest()


def test_mrenclave_of_small_enclave():
    tcs_data, rx_data, rw_data = _page(10), _page(11), _page(12)
    expected = _independent_mrenclave(tcs_data, rx_data)

    m = crypto.Measurement()
    m.ecreate(SSAFRAMESIZE, ENCL_SIZE)
    m.eadd(0x0000, TCS_FLAGS & ~0x7)          # the EADD leaf clears RWX for TCS
    for c in range(0, 4096, 256):
        m.eextend(c, tcs_data[c:c + 256])
    m.eadd(0x1000, RX_FLAGS)
    for c in range(0, 4096, 256):
        m.eextend(0x1000 + c, rx_data[c:c + 256])
    m.eadd(0x2000, RW_FLAGS)
    assert m.update_counter == 1 + 3 + 2 * 16 * 5
    assert m.finalize() == expected

    pages = [(0x0000, TCS_FLAGS, tcs_data), (0x1000, RX_FLAGS, rx_data),
             (0x2000, RW_FLAGS, None)]
    assert crypto.mrenclave(SSAFRAMESIZE, ENCL_SIZE, pages) == expected
    # The unmeasured page's EADD record counts; measuring its contents would change the hash.
    assert crypto.mrenclave(SSAFRAMESIZE, ENCL_SIZE, pages[:2]) != expected
    assert crypto.mrenclave(SSAFRAMESIZE, ENCL_SIZE,
                            pages[:2] + [(0x2000, RW_FLAGS, rw_data)]) != expected


def test_measurement_without_rwx_clearing_differs():
    m = crypto.Measurement()
    m.ecreate(SSAFRAMESIZE, ENCL_SIZE)
    m.eadd(0, TCS_FLAGS)
    assert m.finalize() != crypto.mrenclave(SSAFRAMESIZE, ENCL_SIZE, [(0, TCS_FLAGS, None)])


def test_measurement_order_matters():
    a = crypto.mrenclave(1, 0x4000, [(0, RW_FLAGS, None), (0x1000, RX_FLAGS, None)])
    b = crypto.mrenclave(1, 0x4000, [(0x1000, RX_FLAGS, None), (0, RW_FLAGS, None)])
    assert a != b


def test_finalize_is_repeatable_and_copy_is_independent():
    m = crypto.Measurement()
    m.ecreate(1, 0x2000)
    first = m.finalize()
    assert m.finalize() == first
    c = m.copy()
    c.eadd(0, RW_FLAGS)
    assert m.finalize() == first and m.update_counter == 1
    assert c.finalize() != first and c.update_counter == 2


def test_eextend_rejects_wrong_chunk_size():
    with pytest.raises(ValueError):
        crypto.Measurement().eextend(0, bytes(255))


# --- SIGSTRUCT ---------------------------------------------------------------------------

MRENCLAVE = hashlib.sha256(b"an enclave").digest()


@pytest.fixture(scope="module")
def signed() -> bytes:
    return crypto.sign_sigstruct(MRENCLAVE)


def test_signed_sigstruct_verifies(signed):
    assert len(signed) == 1808
    assert crypto.verify_sigstruct(signed) == SgxReturn.SGX_SUCCESS == 0


def test_sigstruct_fields(signed):
    sig = SigStruct.unpack(signed)
    assert sig.enclavehash == MRENCLAVE
    assert sig.exponent == 3
    assert sig.vendor == 0 and sig.date == 0x20261125
    assert sig.attributes == 0x4 and sig.xfrm == 3
    assert not sig.reserved_nonzero()


def test_sign_is_deterministic(signed):
    assert crypto.sign_sigstruct(MRENCLAVE) == signed


def test_signature_is_standard_pkcs1_and_q1_q2_match(signed):
    raw = SigStruct.unpack(signed)
    pub = crypto.test_signing_key().public_key()
    n = pub.public_numbers().n
    s = int.from_bytes(raw.signature, "little")
    assert int.from_bytes(raw.modulus, "little") == n
    pub.verify(s.to_bytes(384, "big"), signed[0:128] + signed[900:1028], padding.PKCS1v15(),
               hashes.SHA256())
    q1 = s * s // n
    assert int.from_bytes(raw.q1, "little") == q1
    assert int.from_bytes(raw.q2, "little") == (s ** 3 - q1 * s * n) // n


def test_mrsigner(signed):
    modulus_le = signed[128:512]
    n = crypto.test_signing_key().public_key().public_numbers().n
    assert modulus_le == n.to_bytes(384, "little")
    assert crypto.mrsigner(modulus_le) == hashlib.sha256(modulus_le).digest()
    assert crypto.mrsigner(modulus_le) == hashlib.sha256(n.to_bytes(384, "big")[::-1]).digest()
    with pytest.raises(ValueError):
        crypto.mrsigner(modulus_le[:-1])


def test_test_key_is_rsa3072_e3():
    key = crypto.test_signing_key()
    assert key.key_size == 3072
    assert key.public_key().public_numbers().e == 3
    assert crypto.test_signing_key() is key


def _flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x5A
    return bytes(out)


# DATE, SWDEFINED, MISCSELECT, MISCMASK, ISVFAMILYID, ATTRIBUTES, XFRM, ATTRIBUTEMASK,
# ENCLAVEHASH (first/last), ISVEXTPRODID, ISVPRODID, ISVSVN; then SIGNATURE, MODULUS, Q1, Q2.
@pytest.mark.parametrize("pos", [20, 23, 40, 900, 904, 912, 928, 936, 944, 960, 991, 1008, 1024,
                                 1027, 516, 700, 899, 128, 511, 1040, 1807])
def test_tampering_breaks_signature(signed, pos):
    assert crypto.verify_sigstruct(_flip(signed, pos)) == SgxReturn.SGX_INVALID_SIGNATURE


# HEADER, VENDOR, HEADER2, reserved@44, EXPONENT, reserved@908, @992, @1028.
@pytest.mark.parametrize("pos", [0, 15, 16, 24, 39, 44, 127, 512, 908, 992, 1028, 1039])
def test_malformed_fields_are_invalid_sig_struct(signed, pos):
    assert crypto.verify_sigstruct(_flip(signed, pos)) == SgxReturn.SGX_INVALID_SIG_STRUCT


def test_intel_vendor_accepted():
    assert crypto.verify_sigstruct(crypto.sign_sigstruct(MRENCLAVE, vendor=0x8086)) == 0
    assert crypto.verify_sigstruct(crypto.sign_sigstruct(MRENCLAVE, vendor=0x8087)) \
        == SgxReturn.SGX_INVALID_SIG_STRUCT


def test_verify_wrong_length_raises(signed):
    with pytest.raises(ValueError):
        crypto.verify_sigstruct(signed[:-1])


def test_sign_rejects_key_with_other_exponent():
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError):
        crypto.sign_sigstruct(MRENCLAVE, key=key)


@given(st.binary(min_size=1808, max_size=1808))
def test_verify_never_raises_on_random_bytes(raw):
    assert crypto.verify_sigstruct(raw) in (SgxReturn.SGX_INVALID_SIG_STRUCT,
                                            SgxReturn.SGX_INVALID_SIGNATURE)


@given(st.binary(min_size=384, max_size=384), st.binary(min_size=384, max_size=384),
       st.binary(min_size=384, max_size=384), st.binary(min_size=384, max_size=384))
def test_verify_never_raises_on_well_formed_garbage(modulus, signature, q1, q2):
    raw = SigStruct(modulus=modulus, signature=signature, q1=q1, q2=q2).pack()
    assert raw[:16] == SIGSTRUCT_HEADER
    assert crypto.verify_sigstruct(raw) == SgxReturn.SGX_INVALID_SIGNATURE
