"""epcsim.jit: unmanaged views keep the arrays' data and drop the reference counting."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import pytest
from numba.core import config

from epcsim.jit import (
    UnmanagedArray,
    from_handle,
    from_words,
    prefetch,
    state_handle,
    state_words,
    trailing_zeros,
    unmanaged,
)

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


class Nested(NamedTuple):
    grid: np.ndarray     # two dimensions
    col: np.ndarray      # a strided view (layout "A"): its strides travel too
    inner: Pair


@numba.njit
def _bump_words(w: object) -> int:
    s = from_words(w)
    s.grid[1, 2] += 5
    s.col[1] = 99
    s.inner.a[0] += s.inner.b[2]
    return (s.grid.shape[0] * 1000 + s.grid.shape[1] * 100 + s.col.shape[0] * 10
            + s.inner.a.shape[0])


@numba.njit
def _bump_tuple(s: Nested) -> int:
    return s.grid.shape[0] + s.col.shape[0] + s.inner.a.shape[0]


@numba.njit
def _call_with_words(s_: Nested) -> int:
    s = unmanaged(s_)
    return _bump_words(state_words(s)) + _bump_tuple(s)


def _nested() -> tuple[Nested, np.ndarray]:
    base = np.zeros(10, dtype=np.int64)
    s = Nested(np.arange(12, dtype=np.int64).reshape(3, 4), base[::2],
               Pair(np.zeros(3, dtype=np.int64), np.full(3, 7, dtype=np.int64)))
    return s, base


def test_state_words_hand_a_nested_tuple_to_a_compiled_call() -> None:
    s, base = _nested()
    assert _call_with_words(s) == 3000 + 400 + 50 + 3 + (3 + 5 + 3)
    assert s.grid[1, 2] == 6 + 5
    assert base[2] == 99 and base[1] == 0      # through the view's stride
    assert s.inner.a[0] == 7


def _params(disp: object) -> int:
    """Argument words of the compiled function's LLVM definition (numba names them
    ``%arg.*``; the return and exception slots come besides)."""
    (sig,) = disp.signatures  # type: ignore[attr-defined]
    ir = disp.inspect_llvm(sig)  # type: ignore[attr-defined]
    name = disp.overloads[sig].fndesc.mangled_name  # type: ignore[attr-defined]
    line = next(ln for ln in ir.splitlines() if ln.startswith("define") and name in ln)
    return line.count("%arg.")


def test_a_call_on_state_words_passes_one_pointer_for_the_tuple() -> None:
    """What they are for: the callee on words takes one pointer; the same tuple passed
    itself is flattened into the call word by word."""
    s, _ = _nested()
    _call_with_words(s)
    assert _params(_bump_words) == 1
    assert _params(_bump_tuple) > 20


def test_state_words_refuse_a_tuple_holding_anything_but_arrays() -> None:
    @numba.njit
    def call(s: tuple[np.ndarray, int]) -> int:
        return _bump_words(state_words(s))

    with pytest.raises(numba.core.errors.TypingError, match="neither an array nor a tuple"):
        call((np.zeros(2), 3))


@numba.njit
def _sum_ahead(a: np.ndarray, idx: np.ndarray, by: int) -> int:
    total = 0
    for i in range(idx.shape[0]):
        # Past the end of the index list and far outside the table: a prefetch never faults.
        prefetch(a, idx[i + by] if i + by < idx.shape[0] else 1 << 40)
        total += a[idx[i]]
    return total


@pytest.mark.parametrize("strided", [False, True])
def test_prefetch_emits_the_intrinsic_and_changes_no_value(strided: bool) -> None:
    """Over a C array and over a field of a record table (a strided view)."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 1000, 100_000)
    if strided:
        rec = np.zeros(a.shape[0], np.dtype([("pad", np.uint8), ("v", np.int64)]))
        rec["v"] = a
        a = rec["v"]
        assert not a.flags.c_contiguous
    idx = rng.integers(0, a.shape[0], 5000)
    assert _sum_ahead(a, idx, 16) == int(a[idx].sum())
    ir = "".join(_sum_ahead.inspect_llvm(sig) for sig in _sum_ahead.signatures)
    assert "llvm.prefetch" in ir


@numba.njit
def _elements(a: np.ndarray, m: np.ndarray, i: int, j: int) -> int:
    """Loads, stores and in-place updates of single elements, a row view and a slice."""
    a[i] += 3
    m[i, j] = a[i] * 2
    m[i, j] |= np.int64(1)
    m[0] = 7                      # a whole row: a view, not one element
    return a[i] + m[i, j] + a[1:3].sum() + m[0][1] + m[np.uint64(i), np.uint32(j)]


@numba.njit
def _elements_managed(a: np.ndarray, m: np.ndarray, i: int, j: int) -> int:
    return _elements(a, m, i, j)


@numba.njit
def _elements_unmanaged(a_: np.ndarray, m_: np.ndarray, i: int, j: int) -> int:
    return _elements(unmanaged(a_), unmanaged(m_), i, j)


@numba.njit
def _load(a_: np.ndarray, i: int) -> int:
    return unmanaged(a_)[i]


@numba.njit(boundscheck=True)
def _load_checked(a_: np.ndarray, i: int) -> int:
    return unmanaged(a_)[i]


def test_element_access_on_unmanaged_views_matches_numpy() -> None:
    """Unmanaged element access computes the same elements, for every index type."""
    results = []
    for fn in (_elements_managed, _elements_unmanaged):
        a, m = np.arange(6, dtype=np.int64), np.zeros((3, 4), dtype=np.int64)
        results.append((fn(a, m, np.int64(2), np.int64(3)), a.copy(), m.copy()))
    (r0, a0, m0), (r1, a1, m1) = results
    assert r0 == r1 == 5 + 11 + (1 + 5) + 7 + 11
    assert np.array_equal(a0, a1) and np.array_equal(m0, m1)


def test_unmanaged_loads_do_not_wrap_negative_indices() -> None:
    """No length load, sign test and select: the address is computed from the index alone,
    and with bounds checking on a negative index is out of range like any other."""
    a = np.arange(5, dtype=np.int64)
    assert _load(a, 4) == 4
    ir = "".join(_load.inspect_llvm(sig) for sig in _load.signatures)
    assert "icmp slt" not in ir and "select" not in ir
    assert _load_checked(a, 2) == 2
    with pytest.raises(IndexError):
        _load_checked(a, -1)


@numba.njit
def _tz(x: np.uint64) -> int:
    return trailing_zeros(x)


@pytest.mark.parametrize("x", [1, 2, 12, 1 << 40, (1 << 63) | (1 << 7), (1 << 64) - 1])
def test_trailing_zeros_counts_below_the_lowest_set_bit(x: int) -> None:
    want = (x & -x).bit_length() - 1
    assert _tz(np.uint64(x)) == want
