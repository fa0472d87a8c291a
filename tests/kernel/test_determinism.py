"""The compiled and the interpreted paths give the same event sequence on the same seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(seed: int, jit: bool) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    if not jit:
        env["NUMBA_DISABLE_JIT"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(HERE / "scripted.py"), str(seed)], env=env,
                         capture_output=True, text=True, check=True, timeout=600).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_compiled_and_interpreted_paths_agree() -> None:
    compiled = _run(11, jit=True)
    interpreted = _run(11, jit=False)
    assert compiled["counters"]["written"] > 0  # type: ignore[index]
    assert len(compiled["events"]) > 500  # type: ignore[arg-type]
    assert compiled == interpreted


def test_same_seed_same_events_different_seed_different_events() -> None:
    a, b, c = _run(5, jit=True), _run(5, jit=True), _run(6, jit=True)
    assert a == b and a != c
