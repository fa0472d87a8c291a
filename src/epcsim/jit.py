"""The one place that decides how hot paths are compiled.

Every rule of the model is a plain Python function over arrays decorated with
:func:`njit`. Under ``NUMBA_DISABLE_JIT=1`` numba hands the functions back uncompiled, so
the same source runs as ordinary Python; the tests use that to check both paths agree.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, TypeVar

import numba
from numba.core import config

if config.DISABLE_JIT:
    # Interpreted, numpy's unsigned scalars warn when they wrap; compiled code wraps silently.
    # The wrap is the intended arithmetic (hashes), so the warning is noise.
    warnings.filterwarnings("ignore", message="overflow encountered in scalar",
                            category=RuntimeWarning)

F = TypeVar("F", bound=Callable[..., Any])


def njit(fn: F) -> F:
    """Compile ``fn`` in nopython mode, cached on disk."""
    return numba.njit(cache=True, nogil=True)(fn)  # type: ignore[no-any-return]


def njit_inline(fn: F) -> F:
    """Compile ``fn`` and splice its body into every compiled caller.

    numba passes each array of a state tuple as separate arguments, so a call that takes
    the processor's and the manager's state moves hundreds of words; the small functions on
    the hot paths (list operations, counters, owner operations) are inlined instead.
    """
    return numba.njit(cache=True, nogil=True, inline="always")(fn)  # type: ignore[no-any-return]


def njit_closure(fn: F, cache: bool = False) -> F:
    """Compile a closure over other compiled functions; on disk only when ``cache``.

    numba's cache index pickles the types of a closure's free variables; a cache written
    while an owner lived in one module cannot be read in a process where that module is not
    importable under the same name, and the load fails instead of missing. So closures over
    epcsim's own owners are cached and closures over anybody else's are compiled per process.
    """
    return numba.njit(cache=cache, nogil=True)(fn)  # type: ignore[no-any-return]


def _unmanaged_value(context, builder, ty, value):  # type: ignore[no-untyped-def]
    from numba.core import cgutils, types

    if isinstance(ty, types.Array):
        a = context.make_array(ty)(context, builder, value)
        out = context.make_array(ty)(context, builder)
        for f in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(out, f, getattr(a, f))
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()
    if isinstance(ty, types.BaseTuple):
        items = [_unmanaged_value(context, builder, t, builder.extract_value(value, i))
                 for i, t in enumerate(ty.types)]
        return context.make_tuple(builder, ty, items)
    return value


def _make_unmanaged():  # type: ignore[no-untyped-def]
    from numba.extending import intrinsic

    @intrinsic
    def unmanaged(typingctx, x):  # type: ignore[no-untyped-def]
        """The same arrays (or tuples of arrays) without their reference counts.

        Every call between compiled functions increments and decrements the reference count
        of each array it passes, atomically; with the model's state tuples that is over a
        hundred atomic operations per call, which dominated the hot paths. Views without a
        meminfo skip them. The caller must keep the real arrays alive for the duration,
        which every entry point does (the Python side holds them).
        """
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return _unmanaged_value(context, builder, signature.args[0], args[0])
        return x(x), codegen
    return unmanaged


unmanaged = _make_unmanaged()


def njit_closure_inline(fn: F, cache: bool = False) -> F:
    """:func:`njit_closure`, spliced into its callers (the owner dispatch chain)."""
    return numba.njit(cache=cache, nogil=True, inline="always")(fn)  # type: ignore[no-any-return]


def cacheable(*fns: object) -> bool:
    """Whether closures over ``fns`` may be cached: all of them are epcsim's own."""
    return all(getattr(f, "__module__", "").startswith("epcsim.") or
               getattr(getattr(f, "py_func", None), "__module__", "").startswith("epcsim.")
               for f in fns)
