"""The user-visible command: demo output, JSON, and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from epcsim.cli import main
from epcsim.demo import SECRET, enclave_life

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("content", [True, False])
def test_demo_walks_an_enclave_through_its_life(content: bool) -> None:
    steps = enclave_life(content=content)
    results = [(s.leaf, s.result) for s in steps]
    assert results[:3] == [("ECREATE", "SGX_SUCCESS"), ("EADD/EEXTEND", "SGX_SUCCESS"),
                           ("EINIT", "SGX_SUCCESS")]
    ewbs = [r for leaf, r in results if leaf == "EWB"]
    assert ewbs == ["SGX_NOT_TRACKED", "SGX_SUCCESS"]
    eldus = [r for leaf, r in results if leaf == "ELDU"]
    assert eldus == ["SGX_SUCCESS", "SGX_MAC_COMPARE_FAIL"]
    assert ("read", "ok") in results
    assert results[-1] == ("EPC", "free")
    if content:
        assert SECRET.decode() in next(s.detail for s in steps if s.leaf == "read")


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--walk", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {s["leaf"] for s in doc["steps"]} >= {"ECREATE", "EWB", "ELDU", "EREMOVE"}


@pytest.mark.parametrize("argv", [["bogus"], ["demo", "--seed", "x"], ["demo", "--nope"],
                                  ["replay", str(README), "--epc-pages", "100"],
                                  ["replay", str(README), "--epc-pages", "100",
                                   "--tlb-entries", "100"],
                                  ["replay", str(README), "--epc-pages", "100",
                                   "--tlb-ways", "0"]])
def test_bad_arguments_exit_2_with_one_line(argv: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("epcsim: error: ")


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "epcsim.cli", "demo", "--walk", "--metadata"],
                         capture_output=True, text=True, check=True).stdout
    assert "EWB" in out and "SGX_NOT_TRACKED" in out


def test_readme_quickstart_is_two_commands() -> None:
    text = README.read_text()
    block = re.search(r"## Quickstart\s+```sh\n(.*?)```", text, re.S)
    assert block is not None
    commands = [c for c in block.group(1).splitlines() if c.strip()]
    assert commands == ["python3 -m pip install . && epcsim demo",
                        "python3 -m pip install '.[test]' && pytest"]


@pytest.mark.parametrize("doc", [README] + sorted((README.parent / "docs").glob("*.md")),
                         ids=lambda p: p.name)
def test_documentation_examples_run(doc: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Examples write files (traces, results) where a user would: here, a fresh directory.
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    for code in blocks:
        exec(compile(code, str(doc), "exec"), {})


def test_selftest_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selftest", "--json", "-k", "tcs_entry", "-k", "pte_permissions"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(t["name"], t["suite"], t["passed"]) for t in doc["tests"]] == [
        ("tcs_entry", "sgx", True), ("pte_permissions", "sgx", True)]


def test_progress_says_the_engine_is_being_prepared_until_requests_are_counted() -> None:
    """A bar at 0 through a first run's compile looked hung; it names the wait instead."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from epcsim.cli import PREPARING, _advancer

    assert _advancer(None, "replay", 10) is None
    with Progress(console=Console(file=io.StringIO())) as bar:
        advance = _advancer(bar, "replay", 10)
        assert advance is not None
        (task,) = bar.tasks
        assert task.description == f"replay: {PREPARING}" and task.completed == 0
        advance.stage("building 2000 enclaves")  # type: ignore[attr-defined]
        assert task.description == "replay: building 2000 enclaves"
        advance(3)
        advance(4)
        assert task.description == "replay" and task.completed == 7
        advance.stage("late")  # type: ignore[attr-defined]
        assert task.description == "replay"
