"""numba's ``inline="always"`` without its repeated work: a first compile in half the time.

The model's hot paths are built from small functions spliced into their callers at numba's
IR level (:func:`epcsim.jit.njit_inline`), nested several deep: the reclaim batch inlines
the owner dispatch, which inlines the driver's write, which inlines EWB. numba's inliner
(``numba.core.inline_closurecall.InlineWorker``) spends most of such a compile on two
things it repeats:

- ``inline_ir`` copies the callee's IR one block at a time, each with its own
  ``copy.deepcopy``; every variable refers to the function's scope, so each block's copy
  copies the whole scope again, every variable of the function with it: quadratic in the
  callee's size. One memo shared by the blocks of one call copies the scope once, as a
  deep copy of all the blocks together would; the copies are otherwise the same.
- ``inline_function`` runs the untyped pipeline over the callee at every call site, and
  that pipeline inlines the callee's own callees again, so the work grows with the sites
  of the whole tree. The pipeline's result depends only on the function, the compile flags
  and the contexts; it is kept and handed to ``inline_ir``, which copies its input before
  changing anything (numba's own overload inlining hands it one stored IR the same way).

Measured on the ``sgx`` replay engine's first compile into an empty cache (BENCHMARKS.md,
"First-run compile"). Installed only over the numba sources it was written against,
recognised by a digest of the two methods' source; with another numba, or with
``EPCSIM_NUMBA_INLINER=numba`` in the environment, nothing is changed and compiles take
numba's own time. What is compiled is the same either way.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
from typing import Any

# sha256 of inspect.getsource(InlineWorker.inline_ir) + inline_function's, for the numba
# releases whose inliner this module was checked against (0.68.1).
KNOWN_SOURCES = frozenset({
    "91d27ef12278d55e4d5fcac96033459ebbb15eb9a0b195bc66c17345e982b03e",
})

installed = False
_numba_own: tuple[Any, Any, Any] | None = None


class _SharedMemo:
    """Stands in for the ``copy`` module inside ``inline_closurecall``: ``deepcopy`` without
    a memo of its own uses the one of the ``inline_ir`` call it runs in."""

    memo: dict[int, Any] | None = None

    @staticmethod
    def deepcopy(x: Any, memo: dict[int, Any] | None = None) -> Any:
        return copy.deepcopy(x, _SharedMemo.memo if memo is None else memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def source_digest() -> str:
    """The digest of numba's own two methods (installed or not)."""
    from numba.core.inline_closurecall import InlineWorker

    own = (InlineWorker.inline_ir, InlineWorker.inline_function) if _numba_own is None \
        else _numba_own[1:]
    text = "".join(inspect.getsource(f) for f in own)
    return hashlib.sha256(text.encode()).hexdigest()


def install() -> bool:
    """Replace the two methods if numba's are the ones this was written against."""
    global installed, _numba_own
    if installed:
        return True
    from numba.core import inline_closurecall as ic

    if os.environ.get("EPCSIM_NUMBA_INLINER") == "numba" or source_digest() not in KNOWN_SOURCES:
        return False
    worker = ic.InlineWorker
    _numba_own = (ic.copy, worker.inline_ir, worker.inline_function)
    inline_ir = worker.inline_ir
    # Kept for the process: numba keeps every dispatcher, and with it the function, anyway,
    # and an IR refers to its function, so a weak key would never be dropped.
    untyped: dict[Any, Any] = {}

    def inline_ir_shared_memo(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = _SharedMemo.memo
        _SharedMemo.memo = {}   # one per call: the same callee inlined again is copied anew
        try:
            return inline_ir(self, *args, **kwargs)
        finally:
            _SharedMemo.memo = outer

    def inline_function_once(self: Any, caller_ir: Any, block: Any, i: int, function: Any,
                             arg_typs: Any = None) -> Any:
        # run_untyped_passes sets the caller's flags.enable_ssa to False; so does a hit.
        self.flags.enable_ssa = False
        key = (function, self.flags.copy(), id(self.typingctx), id(self.targetctx),
               type(self.pipeline), tuple(sorted((self.locals or {}).items())))
        callee_ir = untyped.get(key)
        if callee_ir is None:
            callee_ir = untyped[key] = self.run_untyped_passes(function)
        return self.inline_ir(caller_ir, block, i, callee_ir, function.__code__.co_freevars,
                              arg_typs=arg_typs)

    ic.copy = _SharedMemo()
    worker.inline_ir = inline_ir_shared_memo
    worker.inline_function = inline_function_once
    installed = True
    return True


def uninstall() -> None:
    """numba's own inliner again (for comparisons)."""
    global installed
    if not installed or _numba_own is None:
        return
    from numba.core import inline_closurecall as ic

    ic.copy, ic.InlineWorker.inline_ir, ic.InlineWorker.inline_function = _numba_own
    installed = False
