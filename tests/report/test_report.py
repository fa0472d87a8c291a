"""``epcsim report``: plots from result tables and one self-contained HTML page."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reportkit import chromium, finished_run, screenshot

from epcsim.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def _report(results: Path, capsys: pytest.CaptureFixture[str]) -> list[Path]:
    capsys.readouterr()
    assert main(["report", str(results), "--json"]) == 0
    return [Path(f) for f in json.loads(capsys.readouterr().out)["files"]]


def test_report_draws_every_figure_the_run_has_data_for(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _report(finished_run(tmp_path), capsys)
    names = {f.name for f in files}
    for fig in ("epc_usage", "paging_rate", "fault_heatmap", "miss_ratio_curve"):
        assert {f"{fig}.png", f"{fig}.svg"} <= names
        assert (files[0].parent / f"{fig}.png").read_bytes()[:8] == PNG
    # No cgroups, VMs or sweep in this run: those figures are left out, not drawn empty.
    assert not {"cgroup_usage.png", "sweep_miss_ratio.png", "slowdown_working_set.png"} & names
    assert files[-1].name == "report.html"
    svg = (files[0].parent / "miss_ratio_curve.svg").read_text()
    assert "db alone" in svg and "log alone" in svg and "this run (lru)" in svg


def test_html_is_self_contained_with_the_summary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = finished_run(tmp_path)
    html = _report(run, capsys)[-1].read_text()
    summary = json.loads((run / "summary.json").read_text())
    # Counts with thousands separators, sizes with their unit.
    assert f"<td class=\"num\">{summary['faults']:,}</td>" in html
    assert f"<td class=\"num\">{summary['epc_pages']:,} pages (1.0 MiB)</td>" in html
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<td>db</td>" in html  # the per-enclave table


def test_cgroup_and_vm_series_are_drawn_when_present(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = finished_run(tmp_path)
    t = np.repeat(np.arange(5) * 1e-3, 2)
    pq.write_table(pa.table({"time_s": t, "cgroup": ["a", "b"] * 5,
                             "current_pages": np.arange(10), "max_pages": [50, 80] * 5}),
                   run / "cgroup_series.parquet")
    pq.write_table(pa.table({"time_s": t, "vm": ["vm0", "vm1"] * 5,
                             "pages": np.arange(10) * 3}), run / "vm_series.parquet")
    files = _report(run, capsys)
    out = files[0].parent
    cg = (out / "cgroup_usage.svg").read_text()
    assert "a misc.current" in cg and "b misc.max" in cg
    assert "vm vm1" in (out / "epc_usage.svg").read_text()


def test_report_of_a_sweep_draws_miss_ratio_and_slowdown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "sw.toml"
    sweep.write_text('[base]\nkernel = { policy = "lru" }\nrun = { requests = 20000 }\n'
                     'platform = { epc_size = "1MiB" }\n'
                     '[[base.enclaves]]\nname = "a"\nsize = "2MiB"\nworkload = "zipf"\n'
                     '[grid]\n"platform.epc_size" = ["1MiB", "2MiB"]\n'
                     '"enclaves.0.size" = ["1MiB", "2MiB", "4MiB"]\n')
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "sw"), "--json"]) == 0
    files = _report(tmp_path / "sw", capsys)
    names = {f.name for f in files}
    assert {"sweep_miss_ratio.png", "slowdown_working_set.svg", "report.html"} <= names
    svg = (files[0].parent / "slowdown_working_set.svg").read_text()
    assert "platform.epc_size=1MiB" in svg and "platform.epc_size=2MiB" in svg
    assert "enclaves.0.size=" not in svg  # it is the x axis, not a line of its own
    assert "<h2>Sweep</h2>" in files[-1].read_text()


def test_report_of_nothing_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "none")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("epcsim: error: ") for e in err)
    assert err[1].endswith(f"({tmp_path / 'empty'})")


def test_report_renders_in_headless_chromium(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.image

    html = _report(finished_run(tmp_path), capsys)[-1]
    shot = tmp_path / "shot.png"
    screenshot(html, shot, tmp_path / "profile")
    img = matplotlib.image.imread(shot)[..., :3]
    assert img.shape[:2] == (1800, 1100)
    inked = (img < 0.9).any(axis=2)
    # Text, tables and the first figures: a blank or error page has almost no ink.
    assert inked.mean() > 0.02, inked.mean()
    assert inked[:, 550:].mean() > 0.005  # the figures, right of the summary table
    colours = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert colours > 50  # plotted lines and the heatmap, not text alone


def _dom(html: Path, profile: Path) -> str:
    """The page as headless Chromium holds it once loaded (its scripts run)."""
    out = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={profile}", "--window-size=1100,1800",
                          "--virtual-time-budget=5000", "--dump-dom", html.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120)
    return out.stdout


def _at(summary: dict, key: str):  # type: ignore[no-untyped-def, type-arg]
    """``summary`` at a key path such as ``pods[2].slowdown``."""
    node = summary
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


def test_the_page_itself_in_chromium_figures_loaded_headline_is_the_summary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = finished_run(tmp_path)
    files = _report(run, capsys)
    dom = _dom(files[-1], tmp_path / "profile")
    pngs = [f for f in files if f.suffix == ".png"]
    loaded = re.search(r'data-figures="(\d+)/(\d+)"', dom)
    assert loaded, "the page's check did not run"
    assert loaded.group(1) == loaded.group(2) == str(len(pngs))
    widest = re.search(r'data-widest-table="(\d+)/(\d+)"', dom)
    assert widest and int(widest.group(1)) <= int(widest.group(2))
    summary = json.loads((run / "summary.json").read_text())
    numbers = re.findall(r'<span class="num" data-key="([^"]+)" data-value="([^"]+)">', dom)
    keys = {k for k, _ in numbers}
    assert {"slowdown", "faults", "miss_ratio", "requests", "epc_pages"} <= keys
    for key, value in numbers:
        assert float(value) == pytest.approx(float(_at(summary, key)), rel=1e-12), key
    finding = re.search(r'<p class="finding" id="finding">(.*?)</p>', dom, re.S)
    assert finding is not None
    text = re.sub(r"<[^>]+>", "", finding.group(1))
    assert f"{summary['faults']:,} faults" in text
    assert "paging cliff" in text and "MiB" in text


def test_legends_sit_beside_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from epcsim.report.plots import figures
    from epcsim.report.results import load_results

    figs = figures(load_results(finished_run(tmp_path)))
    checked = 0
    for f in figs:
        f.fig.canvas.draw()
        renderer = f.fig.canvas.get_renderer()
        for ax in f.fig.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert box.x0 >= area.x1 - 1, f.name   # right of the axes, over no data
            assert box.x1 <= f.fig.bbox.x1 + 1, f.name   # and inside the figure
            checked += 1
    assert checked >= 2
