"""``epcsim demo``: the packaged scenario, its summary table, and its results and report."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from epcsim.cli import _print_demo, console, main
from epcsim.demo_scenario import demo_scenario


def test_demo_scenario_is_packaged_and_oversubscribed() -> None:
    sc = demo_scenario()
    plat = sc.resolved_platform()
    assert plat.epc_bytes == int(93.5 * 2**20) and plat.name == "client-sgx1"
    assert len(sc.enclaves) == 2
    assert sum(int(e.size) for e in sc.enclaves) > plat.epc_bytes  # type: ignore[arg-type]


def test_demo_runs_pages_and_writes_results_and_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"] == "epcsim demo" and doc["epc_pages"] == 23936
    assert doc["footprint_pages"] > doc["epc_pages"]
    assert doc["ewb"] > 0 and doc["eldu"] > 0 and doc["slowdown"] > 1
    assert [r["name"] for r in doc["per_enclave"]] == ["db", "web"]
    assert json.loads((out / "summary.json").read_text())["faults"] == doc["faults"]
    for name in ("series", "faults", "enclaves", "mrc"):
        assert (out / f"{name}.parquet").exists()
    sweep = pq.read_table(out / "sweep" / "sweep.parquet").to_pylist()
    slowdowns = [r["slowdown"] for r in sweep]
    assert len(sweep) == 6 and slowdowns == sorted(slowdowns)  # more working set, more paging
    report = out / "report"
    for fig in ("epc_usage", "paging_rate", "fault_heatmap", "miss_ratio_curve",
                "slowdown_working_set"):
        assert (report / f"{fig}.png").stat().st_size > 10_000
    assert "epcsim demo" in (report / "report.html").read_text()


def test_demo_table_shows_vm_rows_when_the_run_has_them() -> None:
    summary = {"epc_pages": 23936, "enclaves": 2, "platform": "client-sgx1",
               "per_enclave": [{"name": "db", "faults": 3}],
               "vms": [{"name": "guest0", "mode": "oversubscribed", "host_ewb": 4096,
                        "epc_pages": 8192}]}
    with console.capture() as cap:
        _print_demo(summary, 98041856)
    text = cap.get()
    assert "per VM" in text and "guest0" in text and "4,096" in text
    assert "and 1 VM (oversubscribed)" in " ".join(text.split())  # the title wraps
    assert "8,192" not in text    # the terminal shows the per-VM columns that matter
    with console.capture() as cap:
        _print_demo({**summary, "vms": []}, 98041856)
    assert "per VM" not in cap.get()


def test_out_does_not_go_with_the_walk(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--walk", "--out", "x"]) == 2
    assert capsys.readouterr().err.strip().startswith("epcsim: error: --out goes with")
