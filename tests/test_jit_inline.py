"""numba's inliner as epcsim installs it (``epcsim.jit_inline``): each callee's untyped
pipeline runs once, and what is compiled behaves as under numba's own inliner."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

import numba
import numpy as np
import pytest
from numba.core import config
from numba.core.inline_closurecall import InlineWorker

from epcsim import jit, jit_inline

pytestmark = pytest.mark.skipif(config.DISABLE_JIT, reason="compiles with numba")


def test_installed_over_the_numba_the_tests_run_with() -> None:
    assert jit.jit_inline is jit_inline   # importing epcsim.jit installed it
    # A numba whose inliner changed is recognised and left alone; this fails so that
    # someone reads the new source before adding its digest to KNOWN_SOURCES.
    assert jit_inline.source_digest() in jit_inline.KNOWN_SOURCES, numba.__version__
    assert jit_inline.installed


def _build() -> Callable[..., Any]:
    """A fresh tree of inline="always" functions: two sites of ``step``, each inlining
    ``clamp`` twice, with free variables, a loop and early returns in the callees."""
    lo, hi = -5, 50

    @numba.njit(inline="always")
    def clamp(x: int) -> int:
        if x < lo:
            return lo
        if x > hi:
            return hi
        return x

    @numba.njit(inline="always")
    def step(a: np.ndarray, i: int, k: int) -> int:
        s = 0
        for j in range(k):
            s += clamp(a[(i + j) % a.shape[0]]) - clamp(-a[i] * j)
        return s

    @numba.njit
    def f(a: np.ndarray, k: int) -> int:
        total = 0
        for i in range(a.shape[0]):
            total += step(a, i, k) if i % 3 else -step(a, i, k + 1)
        return total

    return f


@pytest.fixture
def pipeline_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    runs: collections.Counter[str] = collections.Counter()
    run = InlineWorker.run_untyped_passes

    def counted(self: Any, func: Any, enable_ssa: bool = False) -> Any:
        runs[func.__name__] += 1
        return run(self, func, enable_ssa)

    monkeypatch.setattr(InlineWorker, "run_untyped_passes", counted)
    yield runs


def test_each_callee_pipeline_runs_once(pipeline_runs: collections.Counter[str]) -> None:
    f = _build()
    a = np.arange(-20, 40, dtype=np.int64)
    f(a, 4)
    assert pipeline_runs == {"step": 1, "clamp": 1}


def test_numba_own_inliner_runs_it_at_every_site(
        pipeline_runs: collections.Counter[str]) -> None:
    # What the change saves, seen on numba's own inliner: two sites of step, and clamp at
    # two sites in each of step's pipelines.
    jit_inline.uninstall()
    try:
        _build()(np.arange(10, dtype=np.int64), 2)
    finally:
        assert jit_inline.install()
    assert pipeline_runs == {"step": 2, "clamp": 4}


@pytest.mark.parametrize("k", [0, 1, 3, 7])
def test_same_results_as_numba_own_inliner_and_the_interpreter(k: int) -> None:
    rng = np.random.default_rng(k)
    a = rng.integers(-100, 100, size=64).astype(np.int64)
    ours = _build()(a, k)
    jit_inline.uninstall()
    try:
        theirs = _build()(a, k)
    finally:
        assert jit_inline.install()
    assert ours == theirs == _build().py_func(a, k)


def test_copies_of_one_callee_share_one_scope() -> None:
    # The quadratic copy: every block's deep copy carried a copy of the whole scope.
    from numba.core import inline_closurecall as ic
    from numba.core.compiler import run_frontend

    ir = run_frontend(_build().py_func)
    blocks = list(ir.blocks.values())
    assert len(blocks) > 2 and len({id(b.scope) for b in blocks}) == 1
    jit_inline._SharedMemo.memo = {}
    try:
        copies = [ic.copy.deepcopy(b) for b in blocks]
    finally:
        jit_inline._SharedMemo.memo = None
    assert len({id(c.scope) for c in copies}) == 1 and copies[0].scope is not blocks[0].scope
    # Outside an inlining, the module's deepcopy is copy.deepcopy.
    assert ic.copy.deepcopy(blocks[0]).scope is not ic.copy.deepcopy(blocks[1]).scope


def test_left_alone_when_asked_or_over_another_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    own = jit_inline._numba_own
    assert own is not None
    jit_inline.uninstall()
    try:
        assert InlineWorker.inline_function is own[2] and not jit_inline.installed
        monkeypatch.setenv("EPCSIM_NUMBA_INLINER", "numba")
        assert not jit_inline.install()
        monkeypatch.delenv("EPCSIM_NUMBA_INLINER")
        monkeypatch.setattr(jit_inline, "KNOWN_SOURCES", frozenset({"0" * 64}))
        assert not jit_inline.install()
        assert InlineWorker.inline_function is own[2] and InlineWorker.inline_ir is own[1]
    finally:
        monkeypatch.undo()
        assert jit_inline.install()
    assert InlineWorker.inline_function is not own[2]
