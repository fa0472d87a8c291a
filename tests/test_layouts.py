"""Byte-exact layouts of the architectural structures (Intel SDM vol. 3D).

Offsets below are written out from the reference, not read back from the implementation's
tables, so a wrong row in ``arch.py`` shows up here.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from epcsim.arch import (
    SIGSTRUCT_HEADER,
    SIGSTRUCT_HEADER2,
    EinitToken,
    PageInfo,
    Pcmd,
    RdInfo,
    Secinfo,
    Secs,
    SigStruct,
    Tcs,
)

ALL = [Secs, Tcs, Secinfo, PageInfo, Pcmd, SigStruct, EinitToken, RdInfo]
SIZES = {Secs: 4096, Tcs: 4096, Secinfo: 64, PageInfo: 32, Pcmd: 128, SigStruct: 1808,
         EinitToken: 304, RdInfo: 32}
ALIGNS = {Secs: 4096, Tcs: 4096, Secinfo: 64, PageInfo: 32, Pcmd: 128, SigStruct: 4096,
          EinitToken: 512, RdInfo: 32}

# (class, field, offset, width, is_int)
OFFSETS = [
    (Secs, "size", 0, 8, True), (Secs, "baseaddr", 8, 8, True),
    (Secs, "ssaframesize", 16, 4, True), (Secs, "miscselect", 20, 4, True),
    (Secs, "attributes", 48, 8, True), (Secs, "xfrm", 56, 8, True),
    (Secs, "mrenclave", 64, 32, False), (Secs, "mrsigner", 128, 32, False),
    (Secs, "configid", 192, 64, False), (Secs, "isvprodid", 256, 2, True),
    (Secs, "isvsvn", 258, 2, True), (Secs, "configsvn", 260, 2, True),
    (Tcs, "state", 0, 8, True), (Tcs, "flags", 8, 8, True), (Tcs, "ossa", 16, 8, True),
    (Tcs, "cssa", 24, 4, True), (Tcs, "nssa", 28, 4, True), (Tcs, "oentry", 32, 8, True),
    (Tcs, "aep", 40, 8, True), (Tcs, "ofsbase", 48, 8, True), (Tcs, "ogsbase", 56, 8, True),
    (Tcs, "fslimit", 64, 4, True), (Tcs, "gslimit", 68, 4, True),
    (Secinfo, "flags", 0, 8, True),
    (PageInfo, "linaddr", 0, 8, True), (PageInfo, "srcpge", 8, 8, True),
    (PageInfo, "metadata", 16, 8, True), (PageInfo, "secs", 24, 8, True),
    (Pcmd, "enclave_id", 64, 8, True), (Pcmd, "mac", 112, 16, False),
    (SigStruct, "header", 0, 16, False), (SigStruct, "vendor", 16, 4, True),
    (SigStruct, "date", 20, 4, True), (SigStruct, "header2", 24, 16, False),
    (SigStruct, "swdefined", 40, 4, True), (SigStruct, "modulus", 128, 384, False),
    (SigStruct, "exponent", 512, 4, True), (SigStruct, "signature", 516, 384, False),
    (SigStruct, "miscselect", 900, 4, True), (SigStruct, "miscmask", 904, 4, True),
    (SigStruct, "isvfamilyid", 912, 16, False), (SigStruct, "attributes", 928, 8, True),
    (SigStruct, "xfrm", 936, 8, True), (SigStruct, "attributemask", 944, 8, True),
    (SigStruct, "xfrmmask", 952, 8, True), (SigStruct, "enclavehash", 960, 32, False),
    (SigStruct, "isvextprodid", 1008, 16, False), (SigStruct, "isvprodid", 1024, 2, True),
    (SigStruct, "isvsvn", 1026, 2, True), (SigStruct, "q1", 1040, 384, False),
    (SigStruct, "q2", 1424, 384, False),
    (EinitToken, "valid", 0, 4, True), (EinitToken, "attributes", 48, 8, True),
    (EinitToken, "xfrm", 56, 8, True), (EinitToken, "mrenclave", 64, 32, False),
    (EinitToken, "mrsigner", 128, 32, False), (EinitToken, "cpusvnle", 192, 16, False),
    (EinitToken, "isvprodidle", 208, 2, True), (EinitToken, "isvsvnle", 210, 2, True),
    (EinitToken, "maskedmiscselectle", 236, 4, True),
    (EinitToken, "maskedattributesle", 240, 8, True),
    (EinitToken, "maskedxfrmle", 248, 8, True), (EinitToken, "keyid", 256, 32, False),
    (EinitToken, "mac", 288, 16, False),
    (RdInfo, "status", 0, 8, True), (RdInfo, "flags", 8, 8, True),
    (RdInfo, "enclavecontext", 16, 8, True),
]

# Reserved regions (offset, length) of the structures that keep their reserved bytes.
RESERVED = {
    Secinfo: [(8, 56)],
    Secs: [(24, 24), (96, 32), (160, 32), (262, 3834)],
    Tcs: [(72, 4024)],
    Pcmd: [(72, 40)],
    SigStruct: [(44, 84), (908, 4), (992, 16), (1028, 12)],
    EinitToken: [(4, 44), (96, 32), (160, 32), (212, 24)],
}


def _marker(width: int) -> bytes:
    # Every byte distinct and nonzero, so a shifted or truncated field cannot match.
    return bytes((i % 251) + 1 for i in range(width))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_size_align_and_packed_length(cls):
    assert cls.SIZE == SIZES[cls]
    assert cls.ALIGN == ALIGNS[cls]
    assert len(cls().pack()) == SIZES[cls]


def test_default_structures_are_zero_except_sigstruct_constants():
    for cls in (Secs, Tcs, Secinfo, PageInfo, Pcmd, EinitToken, RdInfo):
        assert cls().pack() == bytes(cls.SIZE)
    raw = SigStruct().pack()
    assert raw[0:16] == SIGSTRUCT_HEADER
    assert raw[24:40] == SIGSTRUCT_HEADER2
    assert struct.unpack_from("<I", raw, 512)[0] == 3


def test_sigstruct_header_constants():
    assert SIGSTRUCT_HEADER == bytes.fromhex("06000000E10000000000010000000000")
    assert SIGSTRUCT_HEADER2 == bytes.fromhex("01010000600000006000000001000000")


@pytest.mark.parametrize("cls,name,offset,width,is_int", OFFSETS,
                         ids=[f"{c.__name__}.{n}" for c, n, *_ in OFFSETS])
def test_field_offset(cls, name, offset, width, is_int):
    marker = _marker(width)
    value = int.from_bytes(marker, "little") if is_int else marker
    base = cls().pack()
    raw = cls(**{name: value}).pack()
    assert raw[offset:offset + width] == marker
    changed = [i for i in range(cls.SIZE) if raw[i] != base[i]]
    assert changed and min(changed) >= offset and max(changed) < offset + width
    assert getattr(cls.unpack(raw), name) == value


def test_pcmd_secinfo_at_offset_zero():
    raw = Pcmd(secinfo=Secinfo(flags=0x0000_0000_0000_0213)).pack()
    assert raw[0:8] == (0x213).to_bytes(8, "little")
    assert raw[8:128] == bytes(120)


@pytest.mark.parametrize("cls", list(RESERVED), ids=lambda c: c.__name__)
def test_reserved_regions_hold_the_reserved_field(cls):
    regions = RESERVED[cls]
    total = sum(n for _, n in regions)
    obj = cls(reserved=b"\xff" * total)
    raw = obj.pack()
    base = cls().pack()
    inside = {i for off, n in regions for i in range(off, off + n)}
    for i in range(cls.SIZE):
        assert raw[i] == (0xFF if i in inside else base[i]), i
    assert obj.reserved_nonzero()
    assert not cls().reserved_nonzero()


@pytest.mark.parametrize("cls", list(RESERVED), ids=lambda c: c.__name__)
def test_reserved_nonzero_detects_each_region(cls):
    for off, n in RESERVED[cls]:
        for pos in (off, off + n - 1):
            raw = bytearray(cls().pack())
            raw[pos] ^= 0x01
            obj = cls.unpack(bytes(raw))
            assert obj.reserved_nonzero(), (cls.__name__, pos)
            assert obj.pack() == bytes(raw)


def test_pcmd_nested_secinfo_keeps_reserved():
    raw = bytearray(Pcmd().pack())
    raw[63] = 0x80
    pcmd = Pcmd.unpack(bytes(raw))
    assert pcmd.secinfo.reserved_nonzero()
    assert not pcmd.reserved_nonzero()
    assert pcmd.pack() == bytes(raw)


def test_rdinfo_reserved_written_as_zero():
    raw = bytes(24) + b"\xff" * 8
    assert RdInfo.unpack(raw).pack() == bytes(32)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_unpack_wrong_length_raises(cls):
    for n in (0, cls.SIZE - 1, cls.SIZE + 1):
        with pytest.raises(ValueError):
            cls.unpack(bytes(n))


def test_constructor_rejects_bad_values():
    with pytest.raises(ValueError):
        Secs(mrenclave=bytes(31))
    with pytest.raises(ValueError):
        Secs(ssaframesize=1 << 32)
    with pytest.raises(ValueError):
        Tcs(cssa=-1)
    with pytest.raises(ValueError):
        Secinfo(reserved=bytes(55))
    with pytest.raises(ValueError):
        SigStruct(modulus=bytes(383))
    with pytest.raises(ValueError):
        Pcmd(secinfo=0x200)  # type: ignore[arg-type]


def test_bytearray_fields_are_normalised_to_bytes():
    secs = Secs(mrenclave=bytearray(32))
    assert type(secs.mrenclave) is bytes
    hash(secs)


# --- hypothesis round trips ---------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)


def blob(n: int) -> st.SearchStrategy[bytes]:
    """Exactly ``n`` bytes; long ones are sparse pokes into zeros so examples stay small."""
    if n <= 64:
        return st.binary(min_size=n, max_size=n)
    return st.dictionaries(st.integers(0, n - 1), st.integers(0, 255), max_size=48).map(
        lambda pokes: bytes(pokes.get(i, 0) for i in range(n)))


secinfos = st.builds(Secinfo, flags=u64, reserved=blob(56))

STRATEGIES = {
    Secinfo: secinfos,
    PageInfo: st.builds(PageInfo, linaddr=u64, srcpge=u64, metadata=u64, secs=u64),
    Pcmd: st.builds(Pcmd, secinfo=secinfos, enclave_id=u64, mac=blob(16), reserved=blob(40)),
    Secs: st.builds(Secs, size=u64, baseaddr=u64, ssaframesize=u32, miscselect=u32,
                    attributes=u64, xfrm=u64, mrenclave=blob(32), mrsigner=blob(32),
                    configid=blob(64), isvprodid=u16, isvsvn=u16, configsvn=u16,
                    reserved=blob(3922)),
    Tcs: st.builds(Tcs, state=u64, flags=u64, ossa=u64, cssa=u32, nssa=u32, oentry=u64,
                   aep=u64, ofsbase=u64, ogsbase=u64, fslimit=u32, gslimit=u32,
                   reserved=blob(4024)),
    SigStruct: st.builds(SigStruct, header=blob(16), vendor=u32, date=u32, header2=blob(16),
                         swdefined=u32, modulus=blob(384), exponent=u32, signature=blob(384),
                         miscselect=u32, miscmask=u32, isvfamilyid=blob(16), attributes=u64,
                         xfrm=u64, attributemask=u64, xfrmmask=u64, enclavehash=blob(32),
                         isvextprodid=blob(16), isvprodid=u16, isvsvn=u16, q1=blob(384),
                         q2=blob(384), reserved=blob(116)),
    EinitToken: st.builds(EinitToken, valid=u32, attributes=u64, xfrm=u64, mrenclave=blob(32),
                          mrsigner=blob(32), cpusvnle=blob(16), isvprodidle=u16, isvsvnle=u16,
                          maskedmiscselectle=u32, maskedattributesle=u64, maskedxfrmle=u64,
                          keyid=blob(32), mac=blob(16), reserved=blob(132)),
    RdInfo: st.builds(RdInfo, status=u64, flags=u64, enclavecontext=u64),
}


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_pack_unpack_round_trip(cls):
    @given(STRATEGIES[cls])
    def check(obj):
        raw = obj.pack()
        assert len(raw) == cls.SIZE
        back = cls.unpack(raw)
        assert back == obj
        assert back.pack() == raw

    check()


@pytest.mark.parametrize("cls", list(RESERVED), ids=lambda c: c.__name__)
def test_raw_bytes_round_trip(cls):
    @given(blob(cls.SIZE))
    def check(raw):
        assert cls.unpack(raw).pack() == raw

    check()
