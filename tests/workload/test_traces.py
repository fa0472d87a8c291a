"""Trace readers and writers: round trips, chunking, libCacheSim layouts, and bad input."""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from epcsim.workload import (
    FORMATS,
    Chunk,
    TraceError,
    open_trace,
    write_csv,
    write_lcs,
    write_oracle_general,
    zipf,
)
from epcsim.workload import traces as T

LCS_MAGIC = 0x123456789ABCDEF0
LCS_HEADER = 8192
LCS_RECORD = {1: 24, 2: 28, 3: 36, 4: 40, 5: 44, 6: 52, 7: 68, 8: 100}


def read_all(reader) -> Chunk:
    chunks = list(reader)
    assert chunks, "a reader yields at least one chunk"
    for c in chunks:
        assert c.obj.dtype == np.uint64 and c.tenant.dtype == np.uint32
        assert c.write.dtype == np.bool_
        assert len(c.obj) == len(c.tenant) == len(c.write) > 0
    return Chunk(*(np.concatenate(parts) for parts in zip(*chunks)))


def sample(n: int = 100, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obj = rng.integers(0, 40, n).astype(np.uint64)
    obj[5] = (1 << 64) - 1  # the whole uint64 range survives
    tenant = rng.integers(0, 1 << 24, n).astype(np.uint32)
    write = rng.random(n) < 0.3
    return obj, tenant, write


def brute_next_access(obj: np.ndarray, none: int) -> list[int]:
    out = []
    for i, o in enumerate(obj.tolist()):
        nxt = next((j + 1 for j in range(i + 1, len(obj)) if obj[j] == o), none)
        out.append(nxt)
    return out


# ------------------------------------------------------------------ round trips

def test_formats_tuple():
    assert FORMATS == ("oracleGeneral", "lcs", "csv", "npy")


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_oracle_general_round_trip(tmp_path, chunk):
    obj, _, _ = sample()
    p = tmp_path / "t.oracleGeneral"
    write_oracle_general(p, obj)
    r = open_trace(p, "oracleGeneral", chunk_requests=chunk)
    assert r.fmt == "oracleGeneral" and r.path == str(p)
    assert r.count() == len(obj)
    got = read_all(r)
    np.testing.assert_array_equal(got.obj, obj)
    assert not got.tenant.any() and not got.write.any()
    assert [len(c.obj) for c in r] == [min(chunk, len(obj) - s)
                                       for s in range(0, len(obj), chunk)]


def test_oracle_general_record_layout(tmp_path):
    obj = np.array([5, 7, 5, 9, 7, 5], np.uint64)
    p = tmp_path / "t.og"
    write_oracle_general(p, obj, time=np.arange(1, 7), size=np.full(6, 512))
    raw = p.read_bytes()
    assert len(raw) == 6 * 24
    recs = [struct.unpack("<IQIq", raw[i:i + 24]) for i in range(0, len(raw), 24)]
    assert [r[0] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert [r[1] for r in recs] == obj.tolist()
    assert [r[2] for r in recs] == [512] * 6
    # libCacheSim's vtime is the 1-based position of the next request to the object.
    assert [r[3] for r in recs] == [3, 5, 6, -1, -1, -1]


def test_next_access_vtime_matches_brute_force(tmp_path):
    obj = np.random.default_rng(9).integers(0, 12, 300).astype(np.uint64)
    p = tmp_path / "t.og"
    write_oracle_general(p, obj)
    got = np.fromfile(p, dtype=T._OG_RECORD)["next_access_vtime"].tolist()
    assert got == brute_next_access(obj, -1)
    q = tmp_path / "t.lcs"
    write_lcs(q, obj, version=3)
    rec = np.fromfile(q, dtype=T._lcs_record(3), offset=LCS_HEADER)
    assert rec["next_access_vtime"].tolist() == brute_next_access(obj, (1 << 63) - 1)


@pytest.mark.parametrize("version", range(1, 9))
@pytest.mark.parametrize("chunk", [3, 64, 1 << 20])
def test_lcs_round_trip(tmp_path, version, chunk):
    obj, tenant, write = sample()
    p = tmp_path / f"t.v{version}.lcs"
    if version == 1:
        write_lcs(p, obj, version=1)
    else:
        write_lcs(p, obj, version=version, tenant=tenant, write=write)
    assert p.stat().st_size == LCS_HEADER + len(obj) * LCS_RECORD[version]
    r = open_trace(p, "lcs", chunk_requests=chunk)
    assert r.count() == len(obj)
    got = read_all(r)
    np.testing.assert_array_equal(got.obj, obj)
    if version == 1:
        assert not got.tenant.any() and not got.write.any()
    else:
        np.testing.assert_array_equal(got.tenant, tenant)
        np.testing.assert_array_equal(got.write, write)


def test_lcs_header_layout(tmp_path):
    obj = np.array([5, 7, 5, 9, 7, 5], np.uint64)
    p = tmp_path / "t.lcs"
    write_lcs(p, obj, version=2, tenant=[0, 1, 2, 0, 1, 2], write=[0, 1, 0, 1, 0, 1],
              time=np.arange(1, 7))
    raw = p.read_bytes()
    start_magic, version = struct.unpack_from("<QQ", raw, 0)
    assert (start_magic, version) == (LCS_MAGIC, 2)
    assert struct.unpack_from("<Q", raw, LCS_HEADER - 8)[0] == LCS_MAGIC
    stat = struct.unpack_from("<10q", raw, 16)
    # version, n_req, n_obj, n_req_byte, n_obj_byte, start, end, n_read, n_write, n_delete
    assert stat == (1, 6, 3, 6 * 4096, 3 * 4096, 1, 6, 3, 3, 0)
    assert struct.unpack_from("<2q", raw, 16 + 80) == (4096, 4096)  # smallest/largest size
    assert struct.unpack_from("<i", raw, 16 + 552)[0] == 3           # n_tenant
    # v2 record: op in the low 8 bits of the op:8/tenant:24 word, tenant above it.
    second = struct.unpack_from("<IQIIq", raw, LCS_HEADER + 28)
    assert second == (2, 7, 4096, 13 | (1 << 8), 5)
    last = struct.unpack_from("<IQIIq", raw, LCS_HEADER + 5 * 28)
    assert last == (6, 5, 4096, 13 | (2 << 8), (1 << 63) - 1)


def test_lcs_reads_libcachesim_ops(tmp_path):
    # Records as libCacheSim's converter would write them for other op values.
    ops = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 255]
    writes = {3, 4, 5, 6, 7, 8, 10, 11, 13, 14}
    p = tmp_path / "ops.lcs"
    write_lcs(p, np.arange(len(ops)), version=2)
    raw = bytearray(p.read_bytes())
    for i, op in enumerate(ops):
        struct.pack_into("<I", raw, LCS_HEADER + i * 28 + 16, op | (7 << 8))
    p.write_bytes(bytes(raw))
    got = read_all(open_trace(p, "lcs"))
    assert got.write.tolist() == [op in writes for op in ops]
    assert got.tenant.tolist() == [7] * len(ops)


@pytest.mark.parametrize("chunk", [1, 9, 1 << 20])
def test_csv_round_trip(tmp_path, chunk):
    obj, tenant, write = sample()
    tenant = tenant.astype(np.uint64) << np.uint64(8)  # csv tenants use all 32 bits
    p = tmp_path / "t.csv"
    write_csv(p, obj, tenant=tenant, write=write)
    assert p.read_text().splitlines()[0] == "obj,tenant,op"
    r = open_trace(p, "csv", chunk_requests=chunk)
    assert r.count() is None
    got = read_all(r)
    np.testing.assert_array_equal(got.obj, obj)
    np.testing.assert_array_equal(got.tenant, tenant)
    np.testing.assert_array_equal(got.write, write)
    assert max(len(c.obj) for c in r) <= chunk


def test_csv_without_header_round_trip(tmp_path):
    obj, _, _ = sample()
    p = tmp_path / "t.csv"
    write_csv(p, obj, header=False)
    got = read_all(open_trace(p, "csv", chunk_requests=8))
    np.testing.assert_array_equal(got.obj, obj)


def test_csv_columns_by_number_and_name(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ts|size|op|key|app\n"
                 "1|4096|r|0x1F|3\n"
                 "\n"
                 "2.5|512|W|17|4\r\n"
                 "3|8|write|010|5\n")
    by_number = {"obj": 4, "tenant": 5, "op": 3, "time": 1, "size": 2}
    by_name = {"obj": "key", "tenant": "app", "op": "op", "time": "ts", "size": "size"}
    for columns in (by_number, by_name):
        got = read_all(open_trace(p, "csv", columns=columns, delimiter="|"))
        assert got.obj.tolist() == [0x1F, 17, 10]  # hex, decimal, leading zero is decimal
        assert got.tenant.tolist() == [3, 4, 5]
        assert got.write.tolist() == [False, True, True]


def test_csv_header_detection(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("id,tenant\n1,2\n")
    got = read_all(open_trace(p, "csv", columns={"obj": 1}))
    assert got.obj.tolist() == [1]  # header detected: the obj column is not numeric
    q = tmp_path / "n.csv"
    q.write_text("0xab,2\n1,2\n")
    got = read_all(open_trace(q, "csv", columns={"obj": 1, "tenant": 2}))
    assert got.obj.tolist() == [0xAB, 1]  # a hex id is a number, not a header
    assert got.tenant.tolist() == [2, 2]
    got = read_all(open_trace(p, "csv", columns={"obj": 2}, has_header=True))
    assert got.obj.tolist() == [2]


def test_csv_quoted_fields_and_ops(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('obj,op,note\n1,0,"a,b"\n2,1,x\n3,READ,y\n4,set,z\n5,get,w\n')
    got = read_all(open_trace(p, "csv", columns={"obj": 1, "op": 2}))
    assert got.obj.tolist() == [1, 2, 3, 4, 5]
    assert got.write.tolist() == [False, True, False, True, False]


@pytest.mark.parametrize("chunk", [1, 10, 1 << 20])
def test_npy_round_trip_plain_and_structured(tmp_path, chunk):
    obj, tenant, write = sample()
    p = tmp_path / "plain.npy"
    np.save(p, (obj // np.uint64(2)).astype(np.int64))
    r = open_trace(p, "npy", chunk_requests=chunk)
    assert r.count() == len(obj)
    np.testing.assert_array_equal(read_all(r).obj, obj // np.uint64(2))

    rec = np.zeros(len(obj), dtype=[("time", "<f8"), ("obj", "<u8"), ("tenant", "<u4"),
                                    ("write", "?")])
    rec["obj"], rec["tenant"], rec["write"] = obj, tenant, write
    q = tmp_path / "rec.npy"
    np.save(q, rec)
    got = read_all(open_trace(q, "npy", chunk_requests=chunk))
    np.testing.assert_array_equal(got.obj, obj)
    np.testing.assert_array_equal(got.tenant, tenant)
    np.testing.assert_array_equal(got.write, write)


def test_npy_integer_write_field(tmp_path):
    rec = np.zeros(3, dtype=[("obj", "<i4"), ("write", "<i1")])
    rec["obj"], rec["write"] = [1, 2, 3], [0, 1, 0]
    p = tmp_path / "w.npy"
    np.save(p, rec)
    assert read_all(open_trace(p, "npy")).write.tolist() == [False, True, False]


@pytest.mark.parametrize("fmt", FORMATS)
def test_streams_in_several_chunks(tmp_path, fmt):
    n, chunk = 10_000, 1024
    obj = zipf(3000, n, alpha=0.8, seed=4)
    p = tmp_path / f"big.{fmt}"
    {"oracleGeneral": lambda: write_oracle_general(p, obj),
     "lcs": lambda: write_lcs(p, obj, tenant=obj % 7),
     "csv": lambda: write_csv(p, obj),
     "npy": lambda: np.save(p, obj)}[fmt]()
    if fmt == "npy":
        p = p.with_suffix(".npy")  # np.save keeps a .npy suffix
    r = open_trace(p, fmt, chunk_requests=chunk)
    sizes = [len(c.obj) for c in r]
    assert sizes == [chunk] * 9 + [n - 9 * chunk]
    np.testing.assert_array_equal(np.concatenate([c.obj for c in r]), obj)
    assert r.count() == (None if fmt == "csv" else n)


@pytest.mark.parametrize("mapped", [True, False])
def test_binary_reader_reads_in_chunks_not_whole_file(tmp_path, monkeypatch, mapped):
    """Mapped files are decoded a chunk at a time; unmappable ones read a chunk at a time."""
    obj = np.arange(1000, dtype=np.uint64)
    p = tmp_path / "t.og"
    write_oracle_general(p, obj)
    counts = []
    real = np.frombuffer if mapped else np.fromfile

    def spy(*args, **kw):
        counts.append(kw.get("count"))
        return real(*args, **kw)

    monkeypatch.setattr(T.np, "frombuffer" if mapped else "fromfile", spy)
    if not mapped:
        def no_mmap(*a, **kw):
            raise OSError("not mappable")
        monkeypatch.setattr(T.mmap, "mmap", no_mmap)
    got = np.concatenate([c.obj for c in open_trace(p, "oracleGeneral", chunk_requests=128)])
    assert counts == [128] * 7 + [1000 - 7 * 128]
    np.testing.assert_array_equal(got, obj)


def test_path_object_and_reiteration(tmp_path):
    p = tmp_path / "t.og"
    write_oracle_general(p, [1, 2, 3])
    r = open_trace(Path(p), "oracleGeneral")
    assert read_all(r).obj.tolist() == read_all(r).obj.tolist() == [1, 2, 3]


# ------------------------------------------------------------------ errors

def expect(exc: pytest.ExceptionInfo, path, what: str, where: str | None) -> None:
    e = exc.value
    text = str(e)
    assert "\n" not in text
    assert what in text, text
    assert str(path) in text, text
    if where is None:
        assert e.record is None
        assert text.endswith(f"({path})")
    else:
        assert text.endswith(f"({path}:{where})"), text
        assert e.record == int(where.split()[-1])


def test_trace_error_shape_and_pickle():
    e = TraceError("truncated record 41 (12 of 24 bytes)", "trace.oracleGeneral", 41)
    assert str(e) == "truncated record 41 (12 of 24 bytes) (trace.oracleGeneral:record 41)"
    assert isinstance(e, ValueError) and e.path == "trace.oracleGeneral" and e.record == 41
    e2 = pickle.loads(pickle.dumps(TraceError("bad\nthing", "f.csv", 3, unit="line")))
    assert str(e2) == "bad thing (f.csv:line 3)" and e2.record == 3
    assert str(TraceError("x", "a\nb")) == "x (a\\nb)"


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_file(tmp_path, fmt):
    p = tmp_path / "nope"
    with pytest.raises(TraceError) as exc:
        open_trace(p, fmt)
    assert not isinstance(exc.value, FileNotFoundError)
    expect(exc, p, "no such file", None)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_file(tmp_path, fmt):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    with pytest.raises(TraceError) as exc:
        open_trace(p, fmt)
    expect(exc, p, "empty file", None)


def test_directory_is_not_a_trace(tmp_path):
    with pytest.raises(TraceError, match="not a regular file"):
        open_trace(tmp_path, "oracleGeneral")


def test_unknown_format(tmp_path):
    with pytest.raises(TraceError) as exc:
        open_trace(tmp_path / "t", "parquet")
    expect(exc, tmp_path / "t", "unknown format 'parquet'", None)


def test_csv_options_refused_for_binary(tmp_path):
    p = tmp_path / "t.og"
    write_oracle_general(p, [1])
    with pytest.raises(TraceError, match="apply to csv"):
        open_trace(p, "oracleGeneral", columns={"obj": 1})


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_chunk_size(tmp_path, bad):
    p = tmp_path / "t.og"
    write_oracle_general(p, [1])
    with pytest.raises(ValueError, match="chunk_requests"):
        open_trace(p, "oracleGeneral", chunk_requests=bad)


def test_oracle_general_truncated(tmp_path):
    p = tmp_path / "trace.oracleGeneral"
    write_oracle_general(p, np.arange(41))
    with open(p, "r+b") as f:
        f.truncate(40 * 24 + 12)
    with pytest.raises(TraceError) as exc:
        open_trace(p, "oracleGeneral")
    assert str(exc.value) == f"truncated record 41 (12 of 24 bytes) ({p}:record 41)"


@pytest.mark.parametrize("value, what", [(0, "size 0"), (0xFFFFFFFF, "negative size -1"),
                                         (0x80000000, "negative size")])
def test_oracle_general_bad_size(tmp_path, value, what):
    p = tmp_path / "t.og"
    write_oracle_general(p, np.arange(50))
    raw = bytearray(p.read_bytes())
    struct.pack_into("<I", raw, 36 * 24 + 12, value)  # record 37, in the third chunk of 16
    p.write_bytes(bytes(raw))
    r = open_trace(p, "oracleGeneral", chunk_requests=16)
    with pytest.raises(TraceError) as exc:
        list(r)
    expect(exc, p, what, "record 37")


def test_lcs_v3_negative_size(tmp_path):
    p = tmp_path / "t.lcs"
    write_lcs(p, np.arange(10), version=3)
    raw = bytearray(p.read_bytes())
    struct.pack_into("<q", raw, LCS_HEADER + 4 * 36 + 12, -4096)  # record 5
    p.write_bytes(bytes(raw))
    with pytest.raises(TraceError) as exc:
        list(open_trace(p, "lcs", chunk_requests=3))
    expect(exc, p, "negative size -4096", "record 5")


def lcs_file(tmp_path, **patch) -> Path:
    p = tmp_path / "t.lcs"
    write_lcs(p, np.arange(10), version=2)
    raw = bytearray(p.read_bytes())
    offsets = {"start_magic": 0, "version": 8, "n_req": 24, "end_magic": LCS_HEADER - 8}
    for name, value in patch.items():
        struct.pack_into("<q" if name == "n_req" else "<Q", raw, offsets[name], value)
    p.write_bytes(bytes(raw))
    return p


@pytest.mark.parametrize("patch, what", [
    ({"start_magic": 0xDEADBEEF}, "bad lcs magic 0x00000000deadbeef"),
    ({"end_magic": 1}, "bad lcs end magic"),
    ({"version": 9}, "unsupported lcs version 9"),
    ({"version": 0}, "unsupported lcs version 0"),
    ({"n_req": -1}, "bad lcs header: n_req -1"),
    ({"n_req": 11}, "lcs header says 11 requests but the file holds 10"),
])
def test_lcs_bad_header(tmp_path, patch, what):
    p = lcs_file(tmp_path, **patch)
    with pytest.raises(TraceError) as exc:
        open_trace(p, "lcs")
    expect(exc, p, what, None)


def test_lcs_zero_n_req_in_header_is_accepted(tmp_path):
    # Older writers may leave stat fields 0; the record count then comes from the file size.
    p = lcs_file(tmp_path, n_req=0)
    assert open_trace(p, "lcs").count() == 10


def test_lcs_version_change_makes_records_misfit(tmp_path):
    p = lcs_file(tmp_path, version=3)  # 10 x 28 bytes is not a whole number of 36s
    with pytest.raises(TraceError) as exc:
        open_trace(p, "lcs")
    expect(exc, p, "truncated record 8 (28 of 36 bytes, lcs v3)", "record 8")


def test_lcs_truncated_and_header_only(tmp_path):
    p = lcs_file(tmp_path)
    with open(p, "r+b") as f:
        f.truncate(LCS_HEADER + 3 * 28 + 5)
    with pytest.raises(TraceError) as exc:
        open_trace(p, "lcs")
    expect(exc, p, "truncated record 4 (5 of 28 bytes", "record 4")
    with open(p, "r+b") as f:
        f.truncate(LCS_HEADER)
    with pytest.raises(TraceError) as exc:
        open_trace(p, "lcs")
    expect(exc, p, "no requests after the lcs header", None)
    with open(p, "r+b") as f:
        f.truncate(100)
    with pytest.raises(TraceError) as exc:
        open_trace(p, "lcs")
    expect(exc, p, "truncated lcs header (100 of 8192 bytes)", None)


def test_lcs_is_not_oracle_general(tmp_path):
    p = tmp_path / "t.og"
    write_oracle_general(p, np.arange(400))
    with pytest.raises(TraceError, match="bad lcs magic"):
        open_trace(p, "lcs")


def csv_error(tmp_path, text: str | bytes, **kw) -> tuple[pytest.ExceptionInfo, Path]:
    p = tmp_path / "t.csv"
    if isinstance(text, str):
        p.write_text(text)
    else:
        p.write_bytes(text)
    with pytest.raises(TraceError) as exc:
        list(open_trace(p, "csv", **kw))
    return exc, p


@pytest.mark.parametrize("text, kw, what, where", [
    ("obj,tenant\n1,2\n", {"columns": {"obj": "page"}}, "unknown column name 'page'", "line 1"),
    ("\nobj,tenant\n1,2\n", {"columns": {"obj": "obj", "tenant": "enclave"}},
     "unknown column name 'enclave'", "line 2"),
    ("1,2\n3,4\n5\n", {"columns": {"obj": 1, "tenant": 2}},
     "column 2 (tenant) is beyond the row's 1 field", "line 3"),
    ("1,2\n", {"columns": {"obj": 3}}, "column 3 (obj) is beyond the row's 2 fields", "line 1"),
    ("page,tenant\n1,2\n", {}, "missing obj column", "line 1"),
    ("1\n2\nx7\n", {}, "non-numeric id 'x7'", "line 3"),
    ("1\n\n0xZZ\n", {}, "non-numeric id '0xZZ'", "line 3"),
    ("1\n-4\n", {}, "negative id '-4'", "line 2"),
    ("1\n18446744073709551616\n", {}, "does not fit in 64 bits", "line 2"),
    ("obj,size\n1,4096\n2,-1\n", {}, "negative size -1", "line 3"),
    ("obj,size\n1,0\n", {}, "size 0", "line 2"),
    ("obj,size\n1,big\n", {}, "non-numeric size 'big'", "line 2"),
    ("obj,op\n1,r\n2,delete\n", {}, "unknown op 'delete'", "line 3"),
    ("obj,tenant\n1,-2\n", {}, "bad tenant '-2'", "line 2"),
    ("obj,tenant\n1,4294967296\n", {}, "bad tenant", "line 2"),
    ("obj,time\n1,noon\n", {}, "non-numeric time 'noon'", "line 2"),
    ("1\nobj\n", {"has_header": False}, "non-numeric id 'obj'", "line 2"),
])
def test_csv_record_errors(tmp_path, text, kw, what, where):
    exc, p = csv_error(tmp_path, text, **kw)
    expect(exc, p, what, where)


def test_csv_non_utf8(tmp_path):
    exc, p = csv_error(tmp_path, b"obj\n1\n2\n\xff\xfe3\n4\n")
    expect(exc, p, "invalid UTF-8 at byte 1", "line 4")
    exc, p = csv_error(tmp_path, b"\xc3(obj\n1\n")
    expect(exc, p, "invalid UTF-8", "line 1")


@pytest.mark.parametrize("text, kw, what", [
    ("obj\n1\n", {"columns": {"tenant": 1}}, "missing obj column"),
    ("obj\n1\n", {"columns": {"obj": 1, "pid": 2}}, "unknown column key 'pid'"),
    ("obj\n1\n", {"columns": {"obj": 0}}, "1-based"),
    ("obj\n1\n", {"columns": {"obj": "obj"}, "has_header": False}, "need a header row"),
    ("obj\n1\n", {"delimiter": ",,"}, "delimiter"),
    ("\n\n  \n", {}, "no requests"),
    ("obj,tenant\n", {}, "no requests"),
])
def test_csv_file_errors(tmp_path, text, kw, what):
    exc, p = csv_error(tmp_path, text, **kw)
    expect(exc, p, what, None)


@pytest.mark.parametrize("array, what", [
    (np.zeros(4, np.float64), "dtype float64; need integer"),
    (np.zeros((3, 2), np.int64), "2-D"),
    (np.zeros(4, np.bool_), "need integer"),
    (np.zeros(0, np.int64), "no requests"),
    (np.zeros(3, [("page", "<u8")]), "no 'obj' field"),
    (np.zeros(3, [("obj", "<f8")]), "field 'obj' has dtype float64"),
    (np.array([1, "a"], dtype=object), "not a readable .npy"),
])
def test_npy_file_errors(tmp_path, array, what):
    p = tmp_path / "t.npy"
    np.save(p, array, allow_pickle=True)
    with pytest.raises(TraceError) as exc:
        open_trace(p, "npy")
    expect(exc, p, what, None)


def test_npy_not_npy(tmp_path):
    p = tmp_path / "t.npy"
    p.write_bytes(b"obj\n1\n")
    with pytest.raises(TraceError) as exc:
        open_trace(p, "npy")
    expect(exc, p, "not a readable .npy", None)


def test_npy_record_errors(tmp_path):
    p = tmp_path / "t.npy"
    a = np.arange(30, dtype=np.int64)
    a[22] = -5
    np.save(p, a)
    with pytest.raises(TraceError) as exc:
        list(open_trace(p, "npy", chunk_requests=8))
    expect(exc, p, "negative id -5", "record 23")
    rec = np.zeros(4, [("obj", "<u8"), ("tenant", "<i8"), ("write", "<u1")])
    rec["tenant"][2] = 1 << 33
    np.save(p, rec)
    with pytest.raises(TraceError) as exc:
        list(open_trace(p, "npy"))
    expect(exc, p, "tenant 8589934592 does not fit in 32 bits", "record 3")
    rec["tenant"][2] = 0
    rec["write"][3] = 2
    np.save(p, rec)
    with pytest.raises(TraceError) as exc:
        list(open_trace(p, "npy"))
    expect(exc, p, "write flag 2 is not 0 or 1", "record 4")


# ------------------------------------------------------------------ writer input checks

@pytest.mark.parametrize("call, what", [
    (lambda p: write_oracle_general(p, [1, 2], tenant=[0, 3]), "no tenant field"),
    (lambda p: write_oracle_general(p, []), "empty"),
    (lambda p: write_oracle_general(p, [1, -2]), "negative"),
    (lambda p: write_oracle_general(p, [1.5]), "integers"),
    (lambda p: write_oracle_general(p, [1], size=0), "size values"),
    (lambda p: write_oracle_general(p, [1], size=1 << 31), "size values"),
    (lambda p: write_oracle_general(p, [1], time=-1), "time values"),
    (lambda p: write_lcs(p, [1], version=9), "version must be 1-8"),
    (lambda p: write_lcs(p, [1], version=1, tenant=[4]), "no tenant field"),
    (lambda p: write_lcs(p, [1], version=1, write=[True]), "no op field"),
    (lambda p: write_lcs(p, [1], tenant=[1 << 24]), "tenant values"),
    (lambda p: write_lcs(p, [1, 2], size=[1]), "shape"),
    (lambda p: write_csv(p, [[1, 2]]), "1-D"),
])
def test_writer_rejects(tmp_path, call, what):
    with pytest.raises(ValueError, match=what):
        call(tmp_path / "out")


def test_zero_tenant_is_fine_for_formats_without_one(tmp_path):
    write_oracle_general(tmp_path / "a", [1, 2], tenant=np.zeros(2))
    write_lcs(tmp_path / "b", [1, 2], version=1, tenant=[0, 0], write=[False, False])
    assert open_trace(tmp_path / "b", "lcs").count() == 2


def test_lcs_v3_carries_large_sizes(tmp_path):
    p = tmp_path / "t.lcs"
    write_lcs(p, [1, 2], version=3, size=[1 << 40, 1])
    rec = np.fromfile(p, dtype=T._lcs_record(3), offset=LCS_HEADER)
    assert rec["obj_size"].tolist() == [1 << 40, 1]
    assert read_all(open_trace(p, "lcs")).obj.tolist() == [1, 2]


# ------------------------------------------------------------------ libCacheSim itself

def python_lru_miss_ratio(obj: np.ndarray, capacity: int) -> float:
    cache: OrderedDict[int, None] = OrderedDict()
    misses = 0
    for o in obj.tolist():
        if o in cache:
            cache.move_to_end(o)
        else:
            misses += 1
            cache[o] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return misses / len(obj)


@pytest.mark.parametrize("fmt, version", [("oracleGeneral", None)] +
                         [("lcs", v) for v in range(1, 9)])
def test_libcachesim_reads_our_files(tmp_path, fmt, version):
    """libCacheSim's own readers see the same requests and the same LRU miss ratio, and
    its converters write the same record bytes as ours."""
    lcs = pytest.importorskip("libcachesim")
    obj = zipf(1500, 12_000, alpha=0.9, seed=11)
    write = (obj % 3 == 0)
    tenant = (obj % 5).astype(np.uint32)
    p = tmp_path / "z.bin"
    if fmt == "oracleGeneral":
        write_oracle_general(p, obj, time=np.arange(1, len(obj) + 1))
        trace_type = lcs.TraceType.ORACLE_GENERAL_TRACE
    elif version == 1:
        write_lcs(p, obj, version=1, time=np.arange(1, len(obj) + 1))
        trace_type = lcs.TraceType.LCS_TRACE
    else:
        write_lcs(p, obj, version=version, tenant=tenant, write=write,
                  time=np.arange(1, len(obj) + 1))
        trace_type = lcs.TraceType.LCS_TRACE

    def reader():
        return lcs.TraceReader(str(p), trace_type, lcs.ReaderInitParam(ignore_obj_size=True))

    ours = read_all(open_trace(p, fmt, chunk_requests=1000))
    theirs = list(reader())
    assert len(theirs) == len(ours.obj) == len(obj)
    assert [q.obj_id for q in theirs] == ours.obj.tolist()
    if version not in (None, 1):
        assert [int(q.op) == 13 for q in theirs] == ours.write.tolist()
    # 1-based position of the next request to the same object; libCacheSim shows "never
    # again" (stored as -1 or INT64_MAX) as MAX_REUSE_DISTANCE, which is INT64_MAX.
    expected, last = [], {}
    for i in range(len(obj) - 1, -1, -1):
        o = int(obj[i])
        expected.append(last.get(o, (1 << 63) - 1))
        last[o] = i + 1
    assert [q.next_access_vtime for q in theirs] == expected[::-1]
    for capacity in (50, 300):
        theirs_mr, _ = lcs.LRU(capacity).process_trace(reader())
        assert theirs_mr == pytest.approx(python_lru_miss_ratio(ours.obj, capacity), abs=1e-12)

    if version in (None, 1, 2, 3):
        # Their converter, fed the same requests as csv, writes byte-identical records.
        src = tmp_path / "z.csv"
        ops = np.where(write, "write", "read") if version not in (None, 1) else ["read"] * len(obj)
        with open(src, "w") as f:
            f.write("time,obj,size,op,tenant\n")
            for i, (o, op, t) in enumerate(zip(obj.tolist(), ops, tenant.tolist())):
                f.write(f"{i + 1},{o},4096,{op},{t}\n")
        params = lcs.ReaderInitParam(has_header=True, has_header_set=True, delimiter=",")
        params.time_field, params.obj_id_field, params.obj_size_field = 1, 2, 3
        params.op_field, params.tenant_field = 4, 5
        conv = tmp_path / "conv.bin"
        src_reader = lcs.TraceReader(str(src), lcs.TraceType.CSV_TRACE, params)
        if fmt == "oracleGeneral":
            lcs.Util.convert_to_oracleGeneral(src_reader._reader, str(conv))
            assert conv.read_bytes() == p.read_bytes()
        else:
            lcs.Util.convert_to_lcs(src_reader._reader, str(conv), lcs_ver=version)
            mine, their = p.read_bytes(), conv.read_bytes()
            assert mine[LCS_HEADER:] == their[LCS_HEADER:]
            assert mine[:16] == their[:16] and mine[LCS_HEADER - 8:LCS_HEADER] == \
                their[LCS_HEADER - 8:LCS_HEADER]
            assert mine[16:16 + 96] == their[16:16 + 96]  # n_req ... largest size


@pytest.mark.parametrize("chunk", [7, 1000])
def test_binary_chunks_carry_their_largest_id_for_the_footprint_scan(tmp_path, chunk):
    """A format without tenants reports each chunk's largest id (capped at 2**62) while
    decoding; the replay's footprint scan uses it instead of a second pass, and must find
    what the pass over the ids finds (a CSV reader, which does not report it)."""
    from epcsim.sim.replay import IdMap

    obj = np.array([5, 3, 900, 2, 17, 900, 4, 1 << 63, 8, 0, 66], dtype=np.uint64)
    p = tmp_path / "t.oracleGeneral"
    write_oracle_general(p, obj)
    for c in open_trace(p, "oracleGeneral", chunk_requests=chunk):
        assert c.max_obj == int(min(c.obj.max(), np.uint64(1 << 62)))
    # The zeros of a format without tenant or op columns are shared, and stay zeros.
    first, second = list(open_trace(p, "oracleGeneral", chunk_requests=7))
    assert not first.tenant.any() and not second.write.any()
    q = tmp_path / "t.csv"
    write_csv(q, obj[obj < (1 << 26)])
    for reader in (open_trace(q, "csv"),):
        assert all(c.max_obj == -1 for c in reader)
    small = obj[obj < (1 << 26)]
    write_oracle_general(p, small)
    by_chunk, by_pass = IdMap(), IdMap()
    by_chunk.scan(lambda: open_trace(p, "oracleGeneral", chunk_requests=chunk))
    by_pass.scan(lambda: open_trace(q, "csv"))
    assert by_chunk.identity and by_pass.identity
    np.testing.assert_array_equal(by_chunk.footprint, by_pass.footprint)
    assert by_chunk.footprint.tolist() == [901]


# The footprint scan splits a large trace over the cores, at least SCAN_PART_BYTES each: with
# a part of 48 bytes (two records) every small file below is scanned on several threads.
scan_parts = pytest.mark.parametrize("part_bytes", [T.SCAN_PART_BYTES, 48])


@scan_parts
@pytest.mark.parametrize("fmt, version", [("oracleGeneral", 1), ("lcs", 1), ("lcs", 2)])
def test_scan_ids_reads_the_footprint_in_place(tmp_path, monkeypatch, fmt, version,
                                               part_bytes):
    """The footprint scan of a trace without tenants reads the mapped records without
    decoding a chunk: the same count and largest id (capped at 2**62) as the chunks."""
    monkeypatch.setattr(T, "SCAN_PART_BYTES", part_bytes)
    obj = np.array([5, 3, 900, 2, 17, 900, 4, 1 << 63, 8, 0, 66], dtype=np.uint64)
    p = tmp_path / "t"
    if fmt == "lcs":
        tenant = np.arange(len(obj)) % 3 if version >= 2 else None
        write_lcs(p, obj, tenant=tenant, version=version)
    else:
        write_oracle_general(p, obj)
    r = open_trace(p, fmt, chunk_requests=4)
    found = r.scan_ids()
    if version == 2:
        assert found is None   # tenants: the chunks' own scan counts each one
        return
    assert found == (len(obj), max(c.max_obj for c in r))
    assert found[1] == 1 << 62


@scan_parts
@pytest.mark.parametrize("value, what", [(0, "size 0"), (0xFFFFFFFF, "negative size -1")])
def test_scan_ids_names_the_bad_record_as_reading_does(tmp_path, monkeypatch, value, what,
                                                       part_bytes):
    """The first bad record, also when a later part of the scan has a bad one too."""
    monkeypatch.setattr(T, "SCAN_PART_BYTES", part_bytes)
    p = tmp_path / "t.og"
    write_oracle_general(p, np.arange(50))
    raw = bytearray(p.read_bytes())
    struct.pack_into("<I", raw, 36 * 24 + 12, value)
    struct.pack_into("<I", raw, 48 * 24 + 12, value)
    p.write_bytes(bytes(raw))
    r = open_trace(p, "oracleGeneral", chunk_requests=16)
    with pytest.raises(TraceError) as scanned:
        r.scan_ids()
    with pytest.raises(TraceError) as read:
        list(r)
    assert str(scanned.value) == str(read.value)
    expect(scanned, p, what, "record 37")


@pytest.mark.parametrize("n, workers", [(0, 2), (1, 3), (7, 2), (1000, 3), (1000, 8)])
def test_scan_parts_agree_with_one_pass(n, workers):
    """Split over threads, the scan finds what one pass finds: the largest id (capped at
    2**62, -1 for no records) and the first bad record, wherever the parts begin."""
    rng = np.random.default_rng(n + workers)
    ids = rng.integers(0, 1 << 40, n).astype(np.uint64)
    if n:
        ids[rng.integers(n)] = np.uint64(1 << 63)
    size = np.full(n, 4096, dtype=np.int32)
    top = np.full(1, -1, dtype=np.int64)
    assert T._scan_ids(ids, size, top) == -1
    assert T._scan_parts(ids, size, workers) == (int(top[0]), -1)
    for first in sorted({n // 2, n - 1} if n else set()):
        size[first] = -1
        size[n - 1] = 0
        assert T._scan_parts(ids, size, workers) == (-1, T._scan_ids(ids, size, top)) == \
            (-1, first)
        size[:] = 4096


# --------------------------------------------------------------------------- reading ahead

def test_read_ahead_yields_the_same_chunks_with_a_short_first_one(tmp_path: Path) -> None:
    obj = np.arange(3 * T.FIRST_CHUNK + 5, dtype=np.uint64) % 977
    p = tmp_path / "t.oracleGeneral"
    T.write_oracle_general(p, obj)
    direct = list(T.open_trace(p, "oracleGeneral", chunk_requests=T.FIRST_CHUNK * 2))
    ahead = list(T.read_ahead(T.open_trace(p, "oracleGeneral",
                                           chunk_requests=T.FIRST_CHUNK * 2)))
    assert [len(c.obj) for c in direct] == [T.FIRST_CHUNK, 2 * T.FIRST_CHUNK, 5]
    assert len(ahead) == len(direct)
    for a, b in zip(ahead, direct):
        assert np.array_equal(a.obj, b.obj) and a.max_obj == b.max_obj
    assert np.array_equal(np.concatenate([c.obj for c in ahead]), obj)


def test_read_ahead_raises_the_readers_error_where_its_chunk_would_be(tmp_path: Path) -> None:
    obj = np.arange(2 * T.FIRST_CHUNK, dtype=np.uint64)
    p = tmp_path / "bad.oracleGeneral"
    T.write_oracle_general(p, obj)
    raw = bytearray(p.read_bytes())
    bad = T.FIRST_CHUNK + 10          # a record of the second chunk gets size 0
    struct.pack_into("<I", raw, bad * 24 + 12, 0)
    p.write_bytes(bytes(raw))
    it = T.read_ahead(T.open_trace(p, "oracleGeneral"))
    assert len(next(it).obj) == T.FIRST_CHUNK
    with pytest.raises(T.TraceError) as e:
        next(it)
    assert e.value.record == bad + 1


def test_read_ahead_prepares_each_chunk_on_its_thread_and_raises_where_it_fails(
        tmp_path: Path) -> None:
    import threading

    p = tmp_path / "t.oracleGeneral"
    T.write_oracle_general(p, np.arange(3 * T.FIRST_CHUNK, dtype=np.uint64))
    threads = []

    def prepare(ch: T.Chunk) -> tuple[int, int]:
        threads.append(threading.current_thread().name)
        if ch.obj[0] >= 2 * T.FIRST_CHUNK:
            raise ValueError("third chunk")
        return int(ch.obj[0]), len(ch.obj)

    it = T.read_ahead(T.open_trace(p, "oracleGeneral", chunk_requests=T.FIRST_CHUNK),
                      prepare=prepare)
    assert next(it) == (0, T.FIRST_CHUNK)
    assert next(it) == (T.FIRST_CHUNK, T.FIRST_CHUNK)
    with pytest.raises(ValueError, match="third chunk"):
        next(it)
    assert set(threads) == {"epcsim-read-ahead"}


def test_read_ahead_stops_its_thread_when_the_consumer_stops(tmp_path: Path) -> None:
    import threading

    p = tmp_path / "t.oracleGeneral"
    T.write_oracle_general(p, np.arange(4 * T.FIRST_CHUNK, dtype=np.uint64))
    it = T.read_ahead(T.open_trace(p, "oracleGeneral", chunk_requests=1000))
    next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "epcsim-read-ahead"]
