"""Compressed traces (zstd, gzip), what a file seems to be, and ``epcsim convert``."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pytest
import zstandard

from epcsim.cli import main
from epcsim.workload import (
    FORMATS,
    TraceError,
    compression,
    detect_format,
    open_trace,
    write_oracle_general,
    write_trace,
)
from epcsim.workload.convert import ConvertError, convert_trace

N = 5000
IDS = (np.arange(N) * 7 % 311).astype(np.uint64)
TENANT = (np.arange(N) % 3).astype(np.uint32)
WRITE = np.arange(N) % 4 == 0


def read(path: Path | str, fmt: str | None = None, **kw) -> tuple[np.ndarray, ...]:
    chunks = list(open_trace(path, fmt, **kw))
    return tuple(np.concatenate(parts) for parts in zip(*chunks))


def make(tmp_path: Path, fmt: str, suffix: str) -> Path:
    p = tmp_path / f"t.{fmt}{suffix}"
    if fmt == "oracleGeneral":
        write_trace(p, fmt, IDS)
    else:
        write_trace(p, fmt, IDS, tenant=TENANT, write=WRITE)
    return p


@pytest.mark.parametrize("suffix, kind", [("", None), (".zst", "zstd"), (".gz", "gzip")])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_compressed_or_not(tmp_path, fmt, suffix, kind):
    p = make(tmp_path, fmt, suffix)
    assert compression(p) == kind
    raw = p.read_bytes()
    if kind == "zstd":
        assert raw[:4] == b"\x28\xb5\x2f\xfd"
    if kind == "gzip":
        assert raw[:2] == b"\x1f\x8b"
    obj, tenant, write = read(p, fmt, chunk_requests=777)
    assert np.array_equal(obj, IDS)
    if fmt != "oracleGeneral":
        assert np.array_equal(tenant, TENANT) and np.array_equal(write, WRITE)
    # The name and the bytes agree, so no format is needed.
    assert detect_format(p) == fmt
    assert open_trace(p).fmt == fmt


def test_compression_is_recognised_by_bytes_not_name(tmp_path):
    plain = make(tmp_path, "oracleGeneral", "")
    hidden = tmp_path / "trace.bin"
    hidden.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    assert compression(hidden) == "zstd"
    assert np.array_equal(read(hidden, "oracleGeneral")[0], IDS)
    gz = tmp_path / "other.dat"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert np.array_equal(read(gz)[0], IDS)


def test_a_multi_frame_zstd_file_is_read_whole(tmp_path):
    plain = make(tmp_path, "oracleGeneral", "").read_bytes()
    half = 24 * (N // 2)
    c = zstandard.ZstdCompressor()
    p = tmp_path / "frames.oracleGeneral.zst"
    p.write_bytes(c.compress(plain[:half]) + c.compress(plain[half:]))
    assert np.array_equal(read(p)[0], IDS)


def test_a_compressed_reader_streams(tmp_path):
    """Chunks come one at a time: the first arrives before the stream is read to the end."""
    p = make(tmp_path, "oracleGeneral", ".zst")
    it = iter(open_trace(p, chunk_requests=100))
    first = next(it)
    assert np.array_equal(first.obj, IDS[:100])
    assert open_trace(p).count() is None  # unknown without decompressing it all


def test_a_compressed_lcs_header_gives_the_count(tmp_path):
    assert open_trace(make(tmp_path, "lcs", ".zst")).count() == N


def test_truncated_compressed_record_names_it(tmp_path):
    raw = make(tmp_path, "oracleGeneral", "").read_bytes()[: 24 * 7 + 10]
    p = tmp_path / "cut.oracleGeneral.zst"
    p.write_bytes(zstandard.compress(raw))
    with pytest.raises(TraceError) as exc:
        read(p, "oracleGeneral")
    assert str(exc.value) == f"truncated record 8 (10 of 24 bytes) ({p}:record 8)"


def test_a_cut_or_damaged_zstd_file_is_an_error_not_a_shorter_trace(tmp_path):
    big = tmp_path / "big.oracleGeneral"
    write_oracle_general(big, np.random.default_rng(1).integers(0, 1 << 40, 50_000))
    raw = zstandard.compress(big.read_bytes())
    cut = tmp_path / "cut.zst"
    cut.write_bytes(raw[: len(raw) // 2])   # a download stopped half way
    with pytest.raises(TraceError) as exc:
        read(cut, "oracleGeneral")
    assert str(exc.value) == (f"the zstd data stops inside a frame (file cut short?) "
                              f"({cut})")
    bad = tmp_path / "bad.zst"
    bad.write_bytes(raw[:4] + bytes([raw[4] ^ 0xFF]) + raw[5:])   # a damaged frame header
    with pytest.raises(TraceError, match=r"^(corrupt zstd data: |not an oracleGeneral)"
                       r".*\(.*bad\.zst\)$"):
        read(bad, "oracleGeneral")
    gz = tmp_path / "cut.gz"
    gz.write_bytes(gzip.compress(big.read_bytes())[:100_000])
    with pytest.raises(TraceError, match=r"^corrupt gzip data: .*\(.*cut\.gz\)$"):
        read(gz, "oracleGeneral")


@pytest.mark.parametrize("src, fmt, what", [
    ("t.csv.zst", "oracleGeneral", "not an oracleGeneral trace: the file seems to be "
     "zstd-compressed text (a csv trace?"),
    ("t.lcs.gz", "oracleGeneral", "seems to be a gzip-compressed libCacheSim lcs trace "
     "(version 2); read it as format lcs"),
    ("t.npy", "csv", "not a csv trace: the file seems to be a numpy .npy array"),
    ("t.oracleGeneral", "csv", "seems to be binary records without a header; read it as "
     "format oracleGeneral"),
    ("t.csv", "npy", "not a readable .npy file: the file seems to be text"),
])
def test_a_file_of_another_format_says_what_it_seems(tmp_path, src, fmt, what):
    fmt_of = src.split(".")[1]
    p = make(tmp_path, fmt_of, src[len(f"t.{fmt_of}"):])
    with pytest.raises(TraceError) as exc:
        open_trace(p, fmt)
    assert what in str(exc.value) and str(exc.value).endswith(f"({p})")
    assert "\n" not in str(exc.value)


def test_unread_compressors_are_named(tmp_path):
    p = tmp_path / "t.oracleGeneral.xz"
    p.write_bytes(lzma.compress(make(tmp_path, "oracleGeneral", "").read_bytes()))
    with pytest.raises(TraceError, match="seems to be xz-compressed data"):
        open_trace(p, "oracleGeneral")
    png = tmp_path / "picture"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(TraceError, match="not a trace: the file seems to be a PNG image"):
        open_trace(png)


# ------------------------------------------------------------------ the command line

def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_replay_of_a_compressed_trace_equals_the_plain_one(capsys, tmp_path):
    plain = make(tmp_path, "oracleGeneral", "")
    packed = make(tmp_path, "oracleGeneral", ".zst")
    docs = []
    for p in (plain, packed):
        rc, out, err = run(capsys, "replay", p, "--format", "oracleGeneral", "--epc-pages",
                           "64", "--policy", "lru", "--json")
        assert rc == 0, err
        docs.append(json.loads(out))
    for key in ("requests", "faults", "miss_ratio", "ewb", "footprint_pages"):
        assert docs[0][key] == docs[1][key], key
    assert docs[1]["requests"] == N
    # Without --format the name and the bytes say it.
    rc, out, _ = run(capsys, "replay", packed, "--epc-pages", "64", "--policy", "lru",
                     "--json")
    assert rc == 0 and json.loads(out)["faults"] == docs[0]["faults"]


def test_replay_of_text_as_oracle_general_is_refused_before_replaying(capsys, tmp_path):
    p = make(tmp_path, "csv", ".zst")
    rc, out, err = run(capsys, "replay", p, "--format", "oracleGeneral", "--epc-pages", "64",
                       "--json")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("epcsim: error: not an oracleGeneral trace: the file seems to be "
                          "zstd-compressed text")
    assert err.rstrip().endswith(f"({p})")


@pytest.mark.parametrize("src_fmt, src_suffix, dst", [
    ("lcs", ".zst", "out.csv.gz"), ("csv", ".gz", "out.npy.zst"), ("npy", "", "out.lcs"),
    ("oracleGeneral", ".zst", "out.lcs.gz"), ("lcs", "", "out.npy"),
])
def test_convert_keeps_every_request(capsys, tmp_path, src_fmt, src_suffix, dst):
    src = make(tmp_path, src_fmt, src_suffix)
    out_path = tmp_path / dst
    rc, out, err = run(capsys, "convert", src, out_path, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["requests"] == N and doc["from"] == src_fmt
    assert doc["to"] == dst.split(".")[1]
    obj, tenant, write = read(out_path)
    assert np.array_equal(obj, IDS)
    if src_fmt != "oracleGeneral":
        assert np.array_equal(tenant, TENANT) and np.array_equal(write, WRITE)
    assert not list(tmp_path.glob("*.tmp*"))


def test_convert_with_explicit_formats(capsys, tmp_path):
    src = tmp_path / "trace.data"
    write_oracle_general(src, IDS)
    rc, _, err = run(capsys, "convert", src, tmp_path / "x", "--from", "oracleGeneral",
                     "--to", "csv", "--json")
    assert rc == 0, err
    assert np.array_equal(read(tmp_path / "x", "csv")[0], IDS)


@pytest.mark.parametrize("case, fragment", [
    ("tenants", "oracleGeneral has no field for the trace's tenants and writes"),
    ("noname", "the output's name says no format"),
    ("missing", "no such file"),
    ("text-as-lcs", "not an lcs trace: the file seems to be text"),
])
def test_convert_errors_are_one_line_and_exit_2(capsys, tmp_path, case, fragment):
    src = make(tmp_path, "lcs", ".zst")
    args: list[object] = ["convert", src, tmp_path / "o.oracleGeneral"]
    where = tmp_path / "o.oracleGeneral"
    if case == "noname":
        args, where = ["convert", src, tmp_path / "o.bin"], tmp_path / "o.bin"
    elif case == "missing":
        args, where = ["convert", tmp_path / "none.csv", tmp_path / "o.lcs"], \
            tmp_path / "none.csv"
    elif case == "text-as-lcs":
        src = make(tmp_path, "csv", "")
        args, where = ["convert", src, tmp_path / "o.npy", "--from", "lcs"], src
    rc, out, err = run(capsys, *args)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("epcsim: error: ")
    assert fragment in err and err.rstrip().endswith(f"({where})")
    assert not (tmp_path / "o.oracleGeneral").exists()


def test_convert_api_refuses_its_own_input(tmp_path):
    src = make(tmp_path, "csv", "")
    with pytest.raises(ConvertError, match="the output is the input"):
        convert_trace(src, src)


def test_a_scenario_reads_a_compressed_trace_with_or_without_its_format(tmp_path):
    import epcsim

    make(tmp_path, "oracleGeneral", ".zst")
    plain = make(tmp_path, "oracleGeneral", "")
    runs = []
    for trace, fmt in (("t.oracleGeneral.zst", {"format": "oracleGeneral"}),
                       ("t.oracleGeneral.zst", {}), (plain.name, {})):
        r = epcsim.run({"platform": {"epc_size": "1MiB"}, "run": {"requests": 8000},
                        "enclaves": [{"name": "a", "trace": trace, **fmt}]},
                       base_dir=tmp_path)
        runs.append(r.summary)
    for key in ("requests", "faults", "footprint_pages", "ewb"):
        assert runs[0][key] == runs[1][key] == runs[2][key], key
    assert runs[0]["footprint_pages"] == len(np.unique(IDS))
