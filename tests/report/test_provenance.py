"""Every output says where it came from: the epcsim version and the scenario's digest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq

import epcsim
from epcsim.cli import main
from epcsim.provenance import digest, table_stamp
from epcsim.report.write import write_report
from epcsim.workload.scenario import validate

SCENARIO = {"platform": {"epc_size": "4MiB"}, "run": {"requests": 20000, "seed": 3},
            "enclaves": [{"name": "a", "size": "6MiB", "workload": "zipf"}]}


def test_summary_parquet_and_report_carry_version_and_digest(tmp_path: Path, capsys) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[platform]\nepc_size = "4MiB"\n[run]\nrequests = 20000\nseed = 3\n'
                 '[[enclaves]]\nname = "a"\nsize = "6MiB"\nworkload = "zipf"\n')
    out = tmp_path / "out"
    assert main(["run", str(f), "--out", str(out), "--json"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    printed = json.loads(capsys.readouterr().out)
    assert summary == printed   # --json prints what summary.json holds
    assert summary["epcsim_version"] == epcsim.__version__
    # The digest is of the scenario as validated: the TOML and the dict spell one scenario.
    expect = digest(validate(SCENARIO).model_dump(mode="json"))
    assert summary["scenario_digest"] == expect
    assert summary["scenario_digest"] == digest(
        json.loads((out / "scenario.resolved.json").read_text()))
    tables = sorted(out.glob("*.parquet"))
    assert {t.stem for t in tables} >= {"enclaves", "series", "faults", "enclave_series"}
    for t in tables:
        assert table_stamp(pq.read_table(t)) == {"epcsim_version": epcsim.__version__,
                                                 "scenario_digest": expect}, t.name
    page = write_report(out)[-1].read_text()
    made = re.search(r'<span id="made-by">([^<]+)</span>', page)
    dg = re.search(r'<code id="scenario-digest">([^<]+)</code>', page)
    assert made and made.group(1) == epcsim.__version__
    assert dg and dg.group(1) == expect


def test_a_different_scenario_has_a_different_digest() -> None:
    a = epcsim.run(SCENARIO).summary["scenario_digest"]
    other = {**SCENARIO, "run": {"requests": 20000, "seed": 4}}
    b = epcsim.run(other).summary["scenario_digest"]
    assert a != b and len(a) == len(b) == 16


def test_the_report_of_unstamped_results_says_so(tmp_path: Path, monkeypatch) -> None:
    r = epcsim.run(SCENARIO)
    del r.summary["epcsim_version"], r.summary["scenario_digest"]
    r.save(tmp_path)
    monkeypatch.setattr(epcsim, "__version__", "9.9.9")
    page = write_report(tmp_path)[-1].read_text()
    assert "an unknown version (results without a stamp)" in page
    assert '<span id="drawn-by">9.9.9</span>' in page
