"""The one place that decides how hot paths are compiled.

Every rule of the model is a plain Python function over arrays decorated with
:func:`njit`. Under ``NUMBA_DISABLE_JIT=1`` numba hands the functions back uncompiled, so
the same source runs as ordinary Python; the tests use that to check both paths agree.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import warnings

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


def njit_closure(fn: F) -> F:
    """Compile a closure over other compiled functions, without the disk cache.

    numba's cache index pickles the types of a closure's free variables; a cache written
    while an owner lived in one module cannot be read in a process where that module is not
    importable under the same name, and the load fails instead of missing. Closures are
    small, so compiling them once per process costs little.
    """
    return numba.njit(cache=False, nogil=True)(fn)  # type: ignore[no-any-return]
