"""matplotlib is the ``plots`` extra: without it, a command that draws says how to get it,
in one line, before any other work; the rest of epcsim does not need it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from reportkit import finished_run

from epcsim.cli import main

HINT = "pip install 'epcsim[plots]'"


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes ``import matplotlib`` raise ImportError, as on a machine without it.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_report_without_matplotlib_names_the_extra(
        tmp_path: Path, no_matplotlib: None, capsys: pytest.CaptureFixture[str]) -> None:
    results = finished_run(tmp_path)
    capsys.readouterr()
    assert main(["report", str(results)]) == 2
    assert HINT in _one_line(capsys)
    assert not (results / "report").exists()


def test_demo_out_without_matplotlib_stops_before_the_run(
        tmp_path: Path, no_matplotlib: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert HINT in line and "demo --out" in line
    assert not out.exists()


def test_sweep_plot_without_matplotlib_stops_before_the_points(
        tmp_path: Path, no_matplotlib: None, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text("this is not read: the missing extra is found first")
    assert main(["sweep", str(spec), "--plot", "miss_ratio", "--x", "platform.epc_size"]) == 2
    assert HINT in _one_line(capsys)


def test_the_demo_needs_no_matplotlib(
        no_matplotlib: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    assert '"faults"' in capsys.readouterr().out
