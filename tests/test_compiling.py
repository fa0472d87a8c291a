"""epcsim.compiling: the line a first compile prints, and the side process beside it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from numba.core import config

from epcsim import compiling
from epcsim.jit import njit_closure

pytestmark = pytest.mark.skipif(config.DISABLE_JIT, reason="compiles with numba")

SRC = Path(__file__).resolve().parents[1] / "src"


def test_a_compile_prints_one_line_and_a_cached_run_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPCSIM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("EPCSIM_SIDE_COMPILE", "0")

    def body(x: int) -> int:
        return x + 41

    first, second = njit_closure(body), njit_closure(body)
    out = io.StringIO()
    with compiling.announced("replay", stream=out):
        assert first(1) == 42
        assert second(1) == 42
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("epcsim: compiling the replay engines")
    assert str(tmp_path) in lines[0]
    assert compiling.estimate("replay") < compiling.UNITS["replay"].seconds  # kept here
    quiet = io.StringIO()
    with compiling.announced("replay", stream=quiet):
        assert first(2) == 43                     # compiled already: nothing to say
    assert quiet.getvalue() == ""


def test_the_side_is_off_when_asked_or_on_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPCSIM_SIDE_COMPILE", "0")
    assert compiling.start_side("replay", "sgx") is None
    monkeypatch.setenv("EPCSIM_SIDE_COMPILE", "1")
    monkeypatch.setattr(compiling, "cores", lambda: 1)
    assert compiling.start_side("replay", "sgx") is None
    assert compiling.start_side("no such unit") is None


def test_the_replay_and_demo_sides_are_on_by_default_and_the_others_are_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []

    class Popen:
        def __init__(self, argv: list[str], **kw: object) -> None:
            started.append(argv)

    import subprocess as sp
    monkeypatch.delenv("EPCSIM_SIDE_COMPILE", raising=False)
    monkeypatch.setattr(compiling, "cores", lambda: 2)
    monkeypatch.setattr(sp, "Popen", Popen)
    assert compiling.start_side("content") is None
    assert compiling.start_side("replay", "lru") is not None
    assert "side_work('replay', 'lru')" in started[0][-1]
    assert compiling.start_side("demo") is not None


COMPILED_BY = """
import json
import sys
from numba.core import event
from epcsim.hw.cpu import Processor
from epcsim.kernel.instance import Kernel
from epcsim.sim.replay import ReplayConfig, warm_up
compiled = []
class Listener(event.Listener):
    def on_start(self, ev):
        fn = ev.data["dispatcher"].py_func
        compiled.append([fn.__module__, fn.__qualname__])
    def on_end(self, ev):
        pass
with event.install_listener("numba:compile", Listener()):
    exec(sys.argv[1])
print(json.dumps(compiled))
"""


def _compiled_after(tmp_path: Path, ahead: str, then: str) -> list[tuple[str, str]]:
    """On an empty cache in ``tmp_path``, one process runs ``ahead``, a later one ``then``:
    the (module, qualname) of each function the later one compiled."""
    env = dict(os.environ, PYTHONPATH=str(SRC), EPCSIM_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", ahead], env=env, check=True, timeout=600)
    assert list(tmp_path.rglob("*.nbc"))
    out = subprocess.run([sys.executable, "-c", COMPILED_BY, then], env=env, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return [tuple(x) for x in json.loads(out.strip().splitlines()[-1])]


def test_the_replay_side_leaves_the_engine_and_its_leaves_for_the_command(
        tmp_path: Path) -> None:
    """The side's work for a replay (the fault path's leaves, the engine, and the entries
    the build calls) is what the command's warm-up then loads instead of compiling: a
    replay in a later process on the same (first empty) cache compiles what only its
    enclaves' build calls (EINIT's checks, say), and none of those."""
    from epcsim.sim import replay as R

    compiled = {name for _, name in _compiled_after(
        tmp_path, "from epcsim.compiling import side_work; side_work('replay', 'sgx')",
        "warm_up(ReplayConfig(policy='sgx'))")}
    assert "einit_secs_check" in compiled            # the build's own part compiles
    ahead = {"make_engine.<locals>.replay_chunk", "make_engine.<locals>.sgx_access",
             *R._AHEAD_LEAVES, *R._AHEAD_ENTRIES,
             *(f"{name}.<python>" for name in R._AHEAD_ENTRIES)}
    assert not compiled & ahead, compiled & ahead


def test_the_side_compiles_the_reclaim_path_the_command_then_loads(tmp_path: Path) -> None:
    """What the side compiles is what a kernel's ksgxd needs: a kernel in a later process
    on the same (first empty) cache compiles none of epcsim's rules for its reclaim path."""
    compiled = _compiled_after(
        tmp_path, "from epcsim.compiling import compile_reclaim_path;"
        " compile_reclaim_path('replay')",
        "Kernel(Processor(epc_size=64 * 4096, n_lps=2), kvm=False).mgr.run_ksgxd()")
    assert sorted(m for m, _ in compiled if m.startswith("epcsim")) == []
