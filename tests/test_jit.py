"""epcsim.jit: each numba extension the model relies on, named and checked.

The extensions (numba.extending APIs and a few numba internals, written against the numba
series pyproject.toml pins): Table/UnmanagedArray (tables without reference counts, element
access without wraparound, casts to and from numba's arrays), StateRef (a state tuple as one
pointer), RuleDispatcher (one compiled version whatever constants a caller passes), the
rules' inliner (numba's InlineInlinables and InlineWorker.inline_ir, doing less work), the
prefetch intrinsics, and numba's trailing_zeros.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import pytest
from numba.core import config

from epcsim.jit import (
    RecordTable,
    StateRef,
    Table,
    UnmanagedArray,
    compile_for,
    deferred,
    field,
    njit_closure,
    njit_inline,
    prefetch,
    state_class,
    table,
    tables,
    trailing_zeros,
)

pytestmark = pytest.mark.skipif(config.DISABLE_JIT, reason="compiled code only")


# ----------------------------------------------------------------------------- tables

class Pair(NamedTuple):
    a: np.ndarray
    b: np.ndarray


@numba.njit
def _step(s: Pair, i: int) -> int:
    s.a[i] += s.b[i]
    return s.a[i]


@numba.njit
def _run(s: Pair, n: int) -> int:
    total = 0
    for i in range(n):
        total += _step(s, i % s.a.shape[0])
    return total + s.a[1:3].sum()


def _nrt_calls(disp: object) -> int:
    asm = "".join(disp.inspect_asm(sig) for sig in disp.signatures)  # type: ignore[attr-defined]
    return asm.count("NRT_incref") + asm.count("NRT_decref")


def test_tables_are_unmanaged_in_compiled_code_and_need_no_reference_counts() -> None:
    s = Pair(table(np.arange(10, dtype=np.int64)), table(np.ones(10, dtype=np.int64)))
    assert isinstance(s.a, Table)
    want_a = np.arange(10) + 10          # every element gets ten increments of one
    total = _run(s, 100)
    assert np.array_equal(s.a, want_a)
    assert total == 10 * sum(range(10)) + 10 * sum(range(1, 11)) + want_a[1:3].sum()
    (sig,) = _step.signatures
    assert all(isinstance(t, UnmanagedArray) for t in sig[0].types)
    assert _nrt_calls(_step) == 0


def test_the_same_callee_over_plain_arrays_counts_references() -> None:
    """The control: numba's own arrays make the caller call the runtime."""
    step = numba.njit(_step.py_func)

    @numba.njit
    def run(s: Pair, n: int) -> int:
        total = 0
        for i in range(n):
            total += step(s, i % s.a.shape[0])
        return total

    s = Pair(np.zeros(4, dtype=np.int64), np.ones(4, dtype=np.int64))
    assert run(s, 8) == 1 + 1 + 1 + 1 + 2 + 2 + 2 + 2
    assert _nrt_calls(run) > 0


def test_a_record_table_reads_fields_by_name_compiled_and_interpreted() -> None:
    rec = table(np.zeros(3, np.dtype([("x", np.int32), ("y", np.uint8)])))
    assert isinstance(rec, RecordTable)

    def bump(r: np.ndarray, i: int) -> int:
        r[i].x += 5
        r[i].y |= np.uint8(2)
        return int(r[i].x) + int(r[i].y)

    assert bump(rec, 1) == 7                      # numpy's records
    assert numba.njit(bump)(rec, 1) == 12         # the compiled rule on the same table
    assert rec.x.tolist() == [0, 10, 0] and rec.y.tolist() == [0, 2, 0]


def test_a_field_of_a_record_table_is_the_view_numpy_gives_and_writes_through() -> None:
    rec = table(np.zeros(4, np.dtype([("x", np.int32), ("y", np.uint8)])))
    rec["x"] = [1, 2, 3, 4]
    x = field(rec, "x")
    assert type(x) is np.ndarray and x.tolist() == rec["x"].tolist()
    assert x.strides == rec["x"].strides
    x[2] = 30                                      # a view: the table sees it
    field(rec, "y")[1] = 7
    assert rec[2].x == 30 and rec[1].y == 7


def test_tables_makes_every_array_of_a_state_a_table() -> None:
    s = tables(Pair(np.zeros(2), np.zeros((2, 2))))
    assert isinstance(s, Pair) and all(isinstance(a, Table) for a in s)


@numba.njit
def _sum_plain(a: np.ndarray) -> int:
    return a.sum()


@numba.njit
def _sum_via(a: np.ndarray) -> int:
    return _sum_plain(a)


def test_an_unmanaged_table_and_a_numba_array_stand_for_each_other() -> None:
    """numba may call a version compiled for one kind with the other (it ranks the
    conversion safe): the cast keeps the array struct and drops or adds no meminfo."""
    plain = np.arange(5, dtype=np.int64)
    assert _sum_plain(plain) == 10                # compiled for numba's array
    assert _sum_via(table(plain)) == 10           # from a rule on an unmanaged one
    assert _sum_via(plain) == 10
    from numba.core import typing
    from numba.core.registry import cpu_target

    ctx: typing.Context = cpu_target.typing_context
    un = UnmanagedArray(numba.int64, 1, "C")
    assert ctx.can_convert(numba.int64[::1], un) and ctx.can_convert(un, numba.int64[::1])
    cast = cpu_target.target_context.get_cast_impl if hasattr(
        cpu_target.target_context, "get_cast_impl") else None
    assert cast is None or cast(un, numba.int64[::1]) is not None


# ----------------------------------------------------------------------------- element access

@numba.njit
def _elements(a: np.ndarray, m: np.ndarray, i: int, j: int) -> int:
    """Loads, stores and in-place updates of single elements, a row view and a slice."""
    a[i] += 3
    m[i, j] = a[i] * 2
    m[i, j] |= np.int64(1)
    m[0] = 7                      # a whole row: a view, not one element
    return a[i] + m[i, j] + a[1:3].sum() + m[0][1] + m[np.uint64(i), np.uint32(j)]


def test_element_access_on_tables_matches_numpy() -> None:
    results = []
    for wrap in (lambda x: x, table):
        a, m = wrap(np.arange(6, dtype=np.int64)), wrap(np.zeros((3, 4), dtype=np.int64))
        results.append((_elements(a, m, np.int64(2), np.int64(3)), np.array(a), np.array(m)))
    (r0, a0, m0), (r1, a1, m1) = results
    assert r0 == r1 == 5 + 11 + (1 + 5) + 7 + 11
    assert np.array_equal(a0, a1) and np.array_equal(m0, m1)


@numba.njit
def _load(a: np.ndarray, i: int) -> int:
    return a[i]


@numba.njit(boundscheck=True)
def _load_checked(a: np.ndarray, i: int) -> int:
    return a[i]


def test_table_loads_do_not_wrap_negative_indices() -> None:
    """No length load, sign test and select: the address is computed from the index alone,
    and with bounds checking on a negative index is out of range like any other."""
    a = table(np.arange(5, dtype=np.int64))
    assert _load(a, 4) == 4
    ir = "".join(_load.inspect_llvm(sig) for sig in _load.signatures)
    assert "icmp slt" not in ir and "select" not in ir
    assert _load_checked(a, 2) == 2
    with pytest.raises(IndexError):
        _load_checked(a, -1)


# ----------------------------------------------------------------------------- StateRef

@state_class
class Machine(NamedTuple):
    grid: np.ndarray     # two dimensions
    col: np.ndarray      # a strided view (layout "A"): its strides travel too
    rec: np.ndarray      # records


REC = np.dtype([("n", np.int64), ("f", np.uint8)])


def _machine() -> tuple[Machine, np.ndarray]:
    base = np.zeros(10, dtype=np.int64)
    m = tables(Machine(np.arange(12, dtype=np.int64).reshape(3, 4), base[::2],
                       np.zeros(4, REC)))
    return m, base


@numba.njit
def _bump(m: Machine, i: int) -> int:
    m.grid[1, 2] += 5
    m.col[1] = 99
    m.rec[i].n += 7
    return m.grid.shape[0] * 1000 + m.grid.shape[1] * 100 + m.col.shape[0] * 10 + \
        m.rec.shape[0]


@numba.njit
def _via(m: Machine, i: int) -> int:
    return _bump(m, i) + _bump(m, i + 1)


def test_a_state_reaches_compiled_code_as_one_pointer_and_writes_through() -> None:
    m, base = _machine()
    assert _via(m, 1) == 2 * (3000 + 400 + 50 + 4)
    assert m.grid[1, 2] == 6 + 10
    assert base[2] == 99 and base[1] == 0      # through the view's stride
    assert m.rec.n.tolist() == [0, 7, 7, 0]
    (sig,) = _bump.signatures
    assert isinstance(sig[0], StateRef)
    # What it is for: the callee's definition takes one argument word for the state (and
    # one for ``i``), where the tuple passed itself would be flattened array by array.
    ir = _bump.inspect_llvm(sig)
    name = _bump.overloads[sig].fndesc.mangled_name
    line = next(ln for ln in ir.splitlines() if ln.startswith("define") and name in ln)
    assert line.count("%arg.") == 2


def test_a_state_holding_anything_but_arrays_is_refused() -> None:
    @state_class
    class Odd(NamedTuple):
        a: np.ndarray
        n: int

    with pytest.raises(Exception, match=r"Odd\.n is not an array"):
        _bump(Odd(table(np.zeros(2)), 3), 0)   # type: ignore[arg-type]


# ----------------------------------------------------------------------------- RuleDispatcher

def test_a_rule_is_compiled_once_whatever_constants_its_callers_pass() -> None:
    # Closures, compiled in this process (a cached caller would not compile its callee).
    @njit_closure
    def scaled(x: int, k: int) -> int:
        return x * k

    @njit_closure
    def callers(x: int) -> int:
        return scaled(x, 2) + scaled(x, 3) + scaled(x, 5) + scaled(np.int64(x), x)

    assert callers(4) == 8 + 12 + 20 + 16
    assert len(scaled.signatures) == 1        # numba's own dispatcher compiles four

    plain_scaled = numba.njit(scaled.py_func)

    @numba.njit
    def plain_callers(x: int) -> int:
        return plain_scaled(x, 2) + plain_scaled(x, 3) + plain_scaled(x, 5)

    assert plain_callers(4) == 40
    assert len(plain_scaled.signatures) == 3  # the control


def test_an_inline_helper_is_spliced_into_its_caller() -> None:
    @njit_closure
    def twice(x: int) -> int:
        return 2 * x

    inline_twice = njit_inline(twice.py_func)

    @njit_closure
    def uses_twice(x: int) -> int:
        return inline_twice(x) + 1

    assert uses_twice(20) == 41
    assert not inline_twice.signatures        # never compiled on its own


def test_inline_helpers_are_built_once_and_spliced_as_numba_splices_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules' inliner (``jit._inline_rules_pass``, over numba's ``InlineInlinables``
    and ``InlineWorker.inline_ir``): a helper's IR is built once however many sites splice
    it, and a caller computes what numba's own inliner makes of the same source."""
    from numba.core.inline_closurecall import InlineWorker

    built: list[str] = []
    untyped = InlineWorker.run_untyped_passes

    def counting(self, func, enable_ssa=False):  # type: ignore[no-untyped-def]
        built.append(func.__name__)
        return untyped(self, func, enable_ssa)

    monkeypatch.setattr(InlineWorker, "run_untyped_passes", counting)

    rule_inner = njit_inline(_inner)
    rule_outer = njit_inline(_rebind(_outer, INNER=rule_inner))
    rule = njit_closure(_rebind(_caller, INNER=rule_inner, OUTER=rule_outer))
    numba_inner = numba.njit(inline="always")(_inner)
    numba_outer = numba.njit(inline="always")(_rebind(_outer, INNER=numba_inner))
    plain = numba.njit(_rebind(_caller, INNER=numba_inner, OUTER=numba_outer))
    caller = _rebind(_caller, INNER=_inner, OUTER=_rebind(_outer, INNER=_inner))

    inputs = (-7, 0, 1, 2, 5, 11, 1000)
    got = [rule(x) for x in inputs]
    ours = list(built)
    assert got == [plain(x) for x in inputs] == [caller(x) for x in inputs]
    theirs = built[len(ours):]
    # The caller splices outer at three sites and inner at two, outer inner at two: numba
    # builds outer at each site and inner at each of its own and each of outer's; the
    # rules' inliner builds each once.
    assert theirs.count("_outer") == 3 and theirs.count("_inner") == 8
    assert ours.count("_outer") == 1 and ours.count("_inner") == 1


def _inner(x: int) -> int:
    return x * 3 if x & 1 else x // 2


def _outer(x: int, n: int) -> int:
    total = 0
    for i in range(n):
        total += INNER(x + i)  # type: ignore[name-defined]  # noqa: F821
    return total - INNER(x)  # type: ignore[name-defined]  # noqa: F821


def _caller(x: int) -> int:
    a = OUTER(x, 4) + INNER(x)  # type: ignore[name-defined]  # noqa: F821
    if a > 10:
        a -= OUTER(a, 2)  # type: ignore[name-defined]  # noqa: F821
    return a + OUTER(x + 1, 3) * INNER(a)  # type: ignore[name-defined]  # noqa: F821


def _rebind(fn, **names):  # type: ignore[no-untyped-def]
    """``fn`` with some of its globals replaced (each variant calls its own helpers)."""
    import types

    return types.FunctionType(fn.__code__, {**fn.__globals__, **names}, fn.__name__)


def _called_cells(disp: object) -> list[str]:
    from epcsim.jitcache import _cells_called

    return [c for cres in disp.overloads.values()  # type: ignore[attr-defined]
            for c in _cells_called(cres.library)]


def test_a_large_rule_is_called_through_a_cell_and_a_small_one_linked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import epcsim.jit as jit

    def body(x: int) -> int:
        return 3 * x + 1

    small = njit_closure(body)

    @njit_closure
    def calls_small(x: int) -> int:
        return small(x) + 1

    assert calls_small(2) == 8
    assert _called_cells(calls_small) == []          # linked: LLVM may inline it

    monkeypatch.setattr(jit, "LINK_MAX_INSTRUCTIONS", 0)
    large = njit_closure(body)

    @njit_closure
    def calls_large(x: int) -> int:
        return large(x) + 1

    assert calls_large(2) == 8
    cells = _called_cells(calls_large)
    assert len(cells) == 1 and cells[0] in jit_cells()


def test_a_rule_compiled_with_link_is_linked_whatever_its_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault path's rules are linked into their callers though they are larger than
    ``LINK_MAX_INSTRUCTIONS``: with the threshold at 0, the same rule compiled without
    ``link`` is called through a cell and with it is not."""
    import epcsim.jit as jit

    def body(x: int) -> int:
        return 5 * x - 2

    monkeypatch.setattr(jit, "LINK_MAX_INSTRUCTIONS", 0)
    through_cell = njit_closure(body)
    linked = njit_closure(body, link=True)

    @njit_closure
    def calls_cell(x: int) -> int:
        return through_cell(x) + 1

    @njit_closure
    def calls_linked(x: int) -> int:
        return linked(x) + 1

    assert calls_cell(3) == calls_linked(3) == 14
    assert len(_called_cells(calls_cell)) == 1
    assert _called_cells(calls_linked) == []


def _define_of(disp: object, name: str) -> str:
    """The body of the function ``name`` in ``disp``'s optimised module."""
    (sig,) = disp.signatures  # type: ignore[attr-defined]
    lines = disp.inspect_llvm(sig).splitlines()  # type: ignore[attr-defined]
    start = next(i for i, ln in enumerate(lines)
                 if ln.startswith("define") and name in ln)
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start:end])


def test_a_linked_rule_is_inlined_where_llvm_alone_would_call_it() -> None:
    """A small rule's body of some hundred instructions, called from two places: LLVM's
    own threshold keeps such a body as a call; a linked rule is inlined all the same."""
    steps = "\n".join(f"    x = ((x * {2 * k + 3}) ^ (x >> {k % 7 + 1})) & 0xFFFFFF\n"
                      f"    if x & {1 << (k % 13)}:\n        x += {k}"
                      for k in range(60))
    ns: dict[str, object] = {}
    exec(f"def body(x):\n{steps}\n    return x\n", ns)
    small = njit_closure(ns["body"])

    @njit_closure
    def calls_twice(x: int) -> int:
        return small(x) + small(x + 1)

    assert calls_twice(2) == ns["body"](2) + ns["body"](3)  # type: ignore[operator]
    (sig,) = small.signatures  # type: ignore[attr-defined]
    callee = small.overloads[sig].fndesc.mangled_name  # type: ignore[attr-defined]
    caller = calls_twice.overloads[  # type: ignore[attr-defined]
        calls_twice.signatures[0]].fndesc.mangled_name  # type: ignore[attr-defined]
    assert callee not in _define_of(calls_twice, caller)


def jit_cells() -> dict[str, object]:
    from epcsim.jitcache import CELLS

    return CELLS


def test_a_deferred_rule_compiles_only_when_asked_and_then_runs_as_called() -> None:
    def walk(x: int, scale: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x * scale + 1

    rule = njit_closure(walk)
    walk_later = deferred(rule, numba.int64, (numba.int64, numba.int64))

    @njit_closure
    def caller(x: int, guest: bool) -> int:
        if guest:
            return walk_later(x, np.int32(3))    # cast to the declared int64
        return x

    assert caller(5, False) == 5
    assert rule.signatures == []                 # compiling the caller did not compile it
    with pytest.raises(RuntimeError, match="walk was not compiled"):
        caller(5, True)
    compile_for(rule, (0, 0))
    assert caller(5, True) == 16
    with pytest.raises(ValueError, match="negative"):  # raised in the callee, propagated
        caller(-1, True)
    assert len(rule.signatures) == 1


def test_a_rule_with_plain_parameters_has_no_wrapper_until_python_calls_it() -> None:
    @njit_closure
    def add(x: int, y: int) -> int:
        return x + y

    @njit_closure
    def caller(x: int) -> int:
        return add(x, 1)

    assert caller(1) == 2
    assert all(cres.fndesc.llvm_cpython_wrapper_name not in str(cres.library._final_module)
               for cres in add.overloads.values())
    assert add(3, 4) == 7                            # a Python call compiles an entry


# ----------------------------------------------------------------------------- intrinsics

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
def _tz(x: np.uint64) -> int:
    return trailing_zeros(x)


@pytest.mark.parametrize("x", [1, 2, 12, 1 << 40, (1 << 63) | (1 << 7), (1 << 64) - 1])
def test_trailing_zeros_counts_below_the_lowest_set_bit(x: int) -> None:
    want = (x & -x).bit_length() - 1
    assert _tz(np.uint64(x)) == want
