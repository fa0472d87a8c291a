"""A small finished run to report on, and headless Chromium to look at the page."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from epcsim.cli import main

SCENARIO = """
[platform]
epc_size = "1MiB"
[kernel]
policy = "lru"
[run]
requests = 40000
seed = 2
mrc = true
series_step_s = 0.0005
[[enclaves]]
name = "db"
size = "2MiB"
workload = "zipf"
weight = 3
[[enclaves]]
name = "log"
size = "512KiB"
workload = "scan"
"""


def finished_run(tmp_path: Path) -> Path:
    """Run a scenario with ``--out`` and return the results directory."""
    sc = tmp_path / "s.toml"
    sc.write_text(SCENARIO)
    out = tmp_path / "run"
    assert main(["run", str(sc), "--json", "--out", str(out)]) == 0
    return out


def chromium() -> str:
    """The headless browser. Where none is installed the test skips with one line, so the
    README's test command passes on a fresh machine; with ``EPCSIM_REQUIRE_BROWSER=1`` (set
    by .ci/run, which installs Chromium) a missing browser fails the test instead."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("EPCSIM_REQUIRE_BROWSER") == "1":
        raise AssertionError("headless Chromium is needed: apt-get install -y chromium "
                             "(.ci/run installs it)")
    pytest.skip("no headless Chromium on this machine (EPCSIM_REQUIRE_BROWSER=1 makes "
                "this a failure; .ci/run installs it)")


def screenshot(html: Path, png: Path, profile: Path) -> None:
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--user-data-dir={profile}",
                    "--window-size=1100,1800", f"--screenshot={png}", html.as_uri()],
                   check=True, capture_output=True, timeout=120)
