"""Bad input to ``epcsim replay``: status 2 and one line ``epcsim: error: ...`` on stderr.

Problems inside records surface while the trace is read, after the engine is compiled, so
those cases use a cache policy (its engine compiles in seconds); the error path is the
command's, whatever the policy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from simkit import without_compile_line

from epcsim.cli import main
from epcsim.workload.traces import write_csv, write_lcs, write_oracle_general

OG_RECORD = 24
LCS_HEADER = 8192


def fails(capsys: pytest.CaptureFixture[str], args: list[str], *fragments: str) -> str:
    """Run ``epcsim ARGS``; it must exit 2 with one error line holding every fragment."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert err.endswith("\n")
    line = lines[0]
    assert line.startswith("epcsim: error: "), line
    assert len(line) > len("epcsim: error: ") + 5
    for f in fragments:
        assert f in line, (f, line)
    return line


def replay(path: Path | str, fmt: str, *extra: str, epc: str = "64",
           policy: str = "lru") -> list[str]:
    return ["replay", str(path), "--format", fmt, "--epc-pages", epc, "--policy", policy,
            "--json", *extra]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.oracleGeneral"
    write_oracle_general(path, np.arange(200, dtype=np.uint64) % 50)
    return path


def test_truncated_record(capsys, tmp_path: Path, good: Path) -> None:
    path = tmp_path / "cut.oracleGeneral"
    path.write_bytes(good.read_bytes()[: 7 * OG_RECORD + 10])
    fails(capsys, replay(path, "oracleGeneral"), "truncated record 8",
          "10 of 24 bytes", f"({path}:record 8)")


def test_wrong_record_size_lcs_body_as_oracle_general(capsys, tmp_path: Path) -> None:
    """Five 28-byte lcs v2 records read as 24-byte oracleGeneral records."""
    lcs = tmp_path / "v2.lcs"
    write_lcs(lcs, np.arange(5, dtype=np.uint64), version=2, tenant=1)
    path = tmp_path / "v2-body.oracleGeneral"
    path.write_bytes(lcs.read_bytes()[LCS_HEADER:])
    assert path.stat().st_size == 5 * 28
    fails(capsys, replay(path, "oracleGeneral"), "truncated record 6", "20 of 24 bytes",
          f"({path}:record 6)")


def test_wrong_record_size_lcs_header_version(capsys, tmp_path: Path) -> None:
    """An lcs header that claims v3 (36-byte records) over a body of v2 records."""
    path = tmp_path / "claims-v3.lcs"
    write_lcs(path, np.arange(5, dtype=np.uint64), version=2, tenant=1)
    raw = bytearray(path.read_bytes())
    raw[8:16] = (3).to_bytes(8, "little")
    path.write_bytes(bytes(raw))
    fails(capsys, replay(path, "lcs"), "truncated record 4", "lcs v3", f"({path}:record 4)")


def test_size_zero_record(capsys, tmp_path: Path) -> None:
    path = tmp_path / "size0.oracleGeneral"
    write_oracle_general(path, np.arange(10, dtype=np.uint64))
    raw = bytearray(path.read_bytes())
    raw[6 * OG_RECORD + 12: 6 * OG_RECORD + 16] = bytes(4)  # obj_size of record 7
    path.write_bytes(bytes(raw))
    fails(capsys, replay(path, "oracleGeneral"), "size 0", f"({path}:record 7)")


def test_empty_file(capsys, tmp_path: Path) -> None:
    path = tmp_path / "empty.oracleGeneral"
    path.write_bytes(b"")
    fails(capsys, replay(path, "oracleGeneral"), "empty file", f"({path})")


def test_nonexistent_file(capsys, tmp_path: Path) -> None:
    path = tmp_path / "missing.oracleGeneral"
    fails(capsys, replay(path, "oracleGeneral"), "no such file", f"({path})")


@pytest.fixture
def sized_csv(tmp_path: Path) -> Path:
    path = tmp_path / "sized.csv"
    path.write_text("obj,size\n1,4096\n2,4096\n3,-4096\n4,4096\n")
    return path


def test_csv_unknown_column_key(capsys, sized_csv: Path) -> None:
    fails(capsys, replay(sized_csv, "csv", "--columns", "obj=1,bogus=2"),
          "unknown column key 'bogus'", f"({sized_csv})")


def test_csv_unknown_column_name(capsys, sized_csv: Path) -> None:
    fails(capsys, replay(sized_csv, "csv", "--columns", "obj=obj,size=bytes"),
          "unknown column name 'bytes'", f"({sized_csv}:line 1)")


def test_csv_malformed_columns(capsys, sized_csv: Path) -> None:
    fails(capsys, replay(sized_csv, "csv", "--columns", "obj"), "--columns", "obj")


def test_csv_negative_size(capsys, sized_csv: Path) -> None:
    fails(capsys, replay(sized_csv, "csv", "--columns", "obj=1,size=2"),
          "negative size -4096", f"({sized_csv}:line 4)")


def test_csv_not_utf8(capsys, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"obj,tenant\n1,0\n2,0\n3,\xe9t\xe9\n")
    fails(capsys, replay(path, "csv"), "invalid UTF-8", f"({path}:line 4)")


def test_csv_not_utf8_header(capsys, tmp_path: Path) -> None:
    path = tmp_path / "latin1-header.csv"
    path.write_bytes(b"obj,caf\xe9\n1,0\n")
    fails(capsys, replay(path, "csv"), "invalid UTF-8", f"({path}:line 1)")


def test_unknown_platform(capsys, good: Path) -> None:
    fails(capsys, replay(good, "oracleGeneral", "--platform", "pentium-iii"),
          "unknown platform 'pentium-iii'", "client-sgx1")


def test_epc_too_small(capsys, good: Path) -> None:
    fails(capsys, replay(good, "oracleGeneral", epc="3"), "--epc-pages", "3")


def test_epc_too_small_for_the_va_pages(capsys, tmp_path: Path) -> None:
    """The kernel model keeps a VA page per 512 enclave pages resident (VA pages are not
    reclaimed): 10 000 pages need 20, more than an EPC of 16 pages holds. (5 000 pages,
    10 VA pages, replay in it: that is the boundary's other side.)"""
    path = tmp_path / "wide.oracleGeneral"
    write_oracle_general(path, np.arange(10_000, dtype=np.uint64))
    fails(capsys, replay(path, "oracleGeneral", epc="16", policy="sgx"),
          "not enough EPC for the replay enclave's VA pages", "tenant 0's 10000 pages",
          "need 20 resident VA pages", "the EPC has 16", f"({path})")


def test_good_trace_after_errors(capsys, good: Path, tmp_path: Path) -> None:
    """The command still works (status 0, nothing on stderr) after failed runs."""
    write_csv(tmp_path / "ok.csv", np.arange(200, dtype=np.uint64) % 50)
    rc = main(replay(good, "oracleGeneral"))
    out, err = capsys.readouterr()
    assert rc == 0 and without_compile_line(err) == ""
    og = json.loads(out)
    rc = main(replay(tmp_path / "ok.csv", "csv"))
    out, err = capsys.readouterr()
    assert rc == 0 and without_compile_line(err) == ""
    assert json.loads(out)["faults"] == og["faults"] == 50
