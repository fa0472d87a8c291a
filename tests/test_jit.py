"""epcsim.jit: unmanaged views keep the arrays' data and drop the reference counting."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import pytest
from numba.core import config

from epcsim.jit import UnmanagedArray, from_handle, prefetch, state_handle, unmanaged

pytestmark = pytest.mark.skipif(config.DISABLE_JIT, reason="compiled code only")


class Pair(NamedTuple):
    a: np.ndarray
    b: np.ndarray


@numba.njit
def _step(s: Pair, i: int) -> int:
    s.a[i] += s.b[i]
    return s.a[i]


@numba.njit
def _run(s_: Pair, n: int) -> int:
    s = unmanaged(s_)
    total = 0
    for i in range(n):
        total += _step(s, i % s.a.shape[0])
    return total + s.a[1:3].sum()


def _nrt_calls(disp: object) -> int:
    asm = "".join(disp.inspect_asm(sig) for sig in disp.signatures)  # type: ignore[attr-defined]
    return asm.count("NRT_incref") + asm.count("NRT_decref")


def test_unmanaged_views_write_through_and_need_no_reference_counts() -> None:
    s = Pair(np.arange(10, dtype=np.int64), np.ones(10, dtype=np.int64))
    want_a = np.arange(10) + 10          # every element gets ten increments of one
    total = _run(s, 100)
    assert np.array_equal(s.a, want_a)
    # Element j returns j + m at its m-th increment; then the slice of the final values.
    assert total == 10 * sum(range(10)) + 10 * sum(range(1, 11)) + want_a[1:3].sum()
    # The callee was compiled for the unmanaged type and refers to no reference count.
    (sig,) = _step.signatures
    assert all(isinstance(t, UnmanagedArray) for t in sig[0].types)
    assert _nrt_calls(_step) == 0


def test_the_same_callee_over_managed_arrays_counts_references() -> None:
    """The control: without the view the callee's code does call the runtime."""
    step = numba.njit(_step.py_func)   # the same source, compiled apart

    @numba.njit
    def run(s: Pair, n: int) -> int:
        total = 0
        for i in range(n):
            total += step(s, i % s.a.shape[0])
        return total

    s = Pair(np.zeros(4, dtype=np.int64), np.ones(4, dtype=np.int64))
    assert run(s, 8) == 1 + 1 + 1 + 1 + 2 + 2 + 2 + 2
    assert _nrt_calls(run) > 0


def test_state_handle_rebuilds_the_tuple() -> None:
    s = Pair(np.arange(6, dtype=np.int64).reshape(2, 3)[0].copy(), np.full(3, 7, np.int64))
    ty = numba.typeof(s)

    @numba.njit
    def bump(h: np.ndarray) -> int:
        t = from_handle(h, ty)
        t.a[0] += t.b[2]
        return t.a.shape[0]

    h = state_handle(s)
    assert bump(h) == 3
    assert s.a[0] == 7


@numba.njit
def _sum_ahead(a: np.ndarray, idx: np.ndarray, by: int) -> int:
    total = 0
    for i in range(idx.shape[0]):
        # Past the end of the index list and far outside the table: a prefetch never faults.
        prefetch(a, idx[i + by] if i + by < idx.shape[0] else 1 << 40)
        total += a[idx[i]]
    return total


def test_prefetch_emits_the_intrinsic_and_changes_no_value() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 1000, 100_000)
    idx = rng.integers(0, a.shape[0], 5000)
    assert _sum_ahead(a, idx, 16) == int(a[idx].sum())
    ir = "".join(_sum_ahead.inspect_llvm(sig) for sig in _sum_ahead.signatures)
    assert "llvm.prefetch" in ir
