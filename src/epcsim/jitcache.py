"""The disk cache of compiled code, keyed by exactly what was compiled.

numba keys a cached function on its own source file's time stamp and keeps the cache beside
the source. Both were wrong for epcsim: a compiled function carries the code of every
compiled function it calls (numba links the callees' code into the caller's library), so a
stale callee went unnoticed, and keying on every file instead (what epcsim did before)
recompiled everything after any edit anywhere, a comment in the report included. A reinstall
also dropped the cache with the installed sources.

Here a cache entry's key is a digest of

* the function's own code: bytecode, constants (docstrings left out), names and the code of
  nested functions, not line numbers, so an edit to a comment or a docstring changes nothing;
* every value its code refers to by name, resolved as numba resolves it: a compiled function
  by its own digest (recursively, so a callee's edit reaches every caller that contains it),
  a constant by its value, an array by its bytes, a class by its name and its integer
  members, a module by the members the code names, a plain function (the extensions numba
  calls to generate code) by its code;
* the cells of a closure, the same way;
* epcsim's code-generation extensions (:data:`EXTENSIONS`), which change how every function
  is lowered; and numba's own key: the signature and the target machine.

The entries live under the user's cache directory (``$EPCSIM_CACHE_DIR``, else
``$XDG_CACHE_HOME/epcsim`` or ``~/.cache/epcsim``), one file per key named by the key's
digest, in a folder per numba and Python version. Identical sources find their code again
after a reinstall or in another checkout; two processes compiling the same function write
the same file (atomically), never each other's.
"""

from __future__ import annotations

import atexit
import builtins
import enum
import hashlib
import os
import sys
import types as pytypes
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numba
import numpy as np
from numba.core.caching import CompileResultCacheImpl, FunctionCache, _CacheLocator
from numba.core.serialize import dumps

# Functions whose code shapes how numba lowers every function of epcsim (jit.py registers
# them); their digest is part of every key. Filled by :func:`register_extension`.
EXTENSIONS: list[Callable[..., Any]] = []


def register_extension(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` as code-generation code that every compiled function depends on."""
    EXTENSIONS.append(fn)
    _EXTENSION_DIGEST.clear()
    return fn


def cache_dir() -> Path:
    """Where compiled code is kept: ``$EPCSIM_CACHE_DIR``, else the user's cache folder."""
    env = os.environ.get("EPCSIM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "epcsim"


# Raised whenever the recipe of a key changes, so entries an older recipe wrote are never
# read. Format 1 could give a closure made anew the memoised digest of a dead closure whose
# id it reused: its entries may hold another closure's code. Format 3 stores with each
# entry the cells its code calls. Format 4: symbols named by content (jit.RuleCompiler);
# entries of format 3 named them by a per-process count, and two could collide.
# Format 5: linked rules are inlined into their callers (``forceinline``); a caller
# compiled over an entry of format 4 would call its small callees instead.
# Format 6: the fault path's rules compiled with ``link`` are linked into their callers
# whatever their size; a caller of format 5 calls them through cells.
KEY_FORMAT = 6


def code_dir() -> Path:
    """The folder of this key format, numba and Python: another never reads these files."""
    return cache_dir() / (f"k{KEY_FORMAT}-numba-{numba.__version__}-py{sys.version_info[0]}"
                          f"{sys.version_info[1]}{getattr(sys, 'abiflags', '')}")


# ----------------------------------------------------------------------------- digests

# Modules whose members are digested by name only: what numba, numpy and the standard
# library do for compiled code changes with their versions, and numba's and Python's are in
# the folder's name.
_THIRD_PARTY = ("numpy", "numba", "llvmlite", "math", "builtins", "operator", "typing",
                "collections", "functools", "itertools", "enum", "dataclasses", "cmath")


def _is_own_module(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] not in _THIRD_PARTY


def _code_bytes(code: pytypes.CodeType, h: Any, doc: str | None = None) -> None:
    """The parts of a code object that decide what it computes: no line numbers, no file,
    and not ``doc``, the function's docstring."""
    h.update(code.co_code)
    h.update(repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
                   code.co_flags, code.co_names, code.co_varnames, code.co_freevars,
                   code.co_cellvars)).encode())
    consts = code.co_consts
    if doc is not None and consts and consts[0] == doc:
        consts = consts[1:]
    for c in consts:
        if isinstance(c, pytypes.CodeType):
            _code_bytes(c, h)
        else:
            h.update(repr(c).encode())
            h.update(b"\0")


def _names(code: pytypes.CodeType) -> set[str]:
    """Every global or attribute name a code object (and the code nested in it) uses."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, pytypes.CodeType):
            out |= _names(c)
    return out


class _Digester:
    """Digests of values as compiled code sees them, memoised for one process."""

    def __init__(self) -> None:
        # By id, holding the function: an id is reused once its object is gone, and a
        # closure made anew (another owner table) must not inherit another's digest.
        self.done: dict[int, tuple[Callable[..., Any], str]] = {}
        self.active: set[int] = set()
        # Every compiled function met, by its function's digest: a cache entry names the
        # rules its code calls by digest, and loading it compiles (or loads) those first.
        self.dispatchers: dict[str, Any] = {}

    def function(self, fn: Callable[..., Any]) -> str:
        """The digest of a Python function's code, its globals as it names them, its cells."""
        key = id(fn)
        hit = self.done.get(key)
        if hit is not None and hit[0] is fn:
            return hit[1]
        if key in self.active:
            # A recursive function: its own name stands for itself.
            return "recursive:" + getattr(fn, "__qualname__", "?")
        self.active.add(key)
        try:
            h = hashlib.sha256()
            code = fn.__code__
            _code_bytes(code, h, fn.__doc__)
            names = _names(code)
            g = fn.__globals__
            for name in sorted(names):
                if name in g:
                    h.update(f"g:{name}={self.value(g[name], names)};".encode())
                elif hasattr(builtins, name):
                    h.update(f"b:{name};".encode())
            for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
                try:
                    v = cell.cell_contents
                except ValueError:      # an empty cell (the function itself, later)
                    v = None
                h.update(f"c:{name}={self.value(v, names)};".encode())
            for d in fn.__defaults__ or ():
                h.update(f"d:{self.value(d, names)};".encode())
            out = h.hexdigest()
        finally:
            self.active.discard(key)
        self.done[key] = (fn, out)
        return out

    def value(self, v: Any, names: set[str]) -> str:
        """What a value referred to by compiled code contributes to its key."""
        from numba.core import types as nbtypes
        from numba.core.dispatcher import Dispatcher

        if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
            return repr(v)
        if isinstance(v, enum.Enum):
            return f"{type(v).__qualname__}.{v.name}={v.value!r}"
        if isinstance(v, (tuple, list, frozenset)):
            return "(" + ",".join(self.value(x, names) for x in v) + ")"
        if isinstance(v, Dispatcher):
            # The options too: a callee inlined, linked or not compiles into another caller.
            opts = sorted((k, repr(x)) for k, x in v.targetoptions.items())
            if getattr(v, "linked", False):
                opts.append(("linked", "True"))
            fd = self.function(v.py_func)
            self.dispatchers.setdefault(fd, v)
            return f"jit:{opts}:" + fd
        if isinstance(v, np.ndarray):
            return f"array:{v.dtype.descr}:{v.shape}:" + hashlib.sha256(
                np.ascontiguousarray(v).view(np.uint8).tobytes()).hexdigest()
        if isinstance(v, np.dtype):
            return f"dtype:{v.descr}"
        if isinstance(v, np.generic):
            return f"{type(v).__name__}:{v!r}"
        if isinstance(v, nbtypes.Type):
            return f"nbtype:{v}"
        if isinstance(v, pytypes.ModuleType):
            if not _is_own_module(v.__name__):
                return "module:" + v.__name__
            parts = [f"module:{v.__name__}"]
            for name in sorted(names):
                if name in vars(v):
                    parts.append(f"{name}={self.value(vars(v)[name], names)}")
            return "[" + ";".join(parts) + "]"
        if isinstance(v, type):
            ints = sorted((k, x) for k, x in vars(v).items()
                          if isinstance(x, (int, str)) and not k.startswith("__"))
            fields = getattr(v, "_fields", None)
            return f"class:{v.__module__}.{v.__qualname__}:{ints!r}:{fields!r}"
        defn = getattr(v, "_defn", None)       # an @intrinsic: its code generator
        if callable(defn):
            return "intrinsic:" + self.function(defn)
        if isinstance(v, pytypes.FunctionType):
            if not _is_own_module(v.__module__):
                return f"function:{v.__module__}.{v.__qualname__}"
            return "function:" + self.function(v)
        if isinstance(v, (pytypes.BuiltinFunctionType, pytypes.MethodType)):
            return f"builtin:{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', v)}"
        mod = getattr(type(v), "__module__", "")
        if not _is_own_module(mod):
            # numba's and numpy's own objects (overloads, ufuncs...): their versions are
            # in the cache folder's name.
            return f"object:{mod}.{type(v).__qualname__}:{getattr(v, '__name__', '')}"
        return f"object:{mod}.{type(v).__qualname__}:" + hashlib.sha256(
            dumps(v)).hexdigest()


_digester = _Digester()


def digest(fn: Callable[..., Any]) -> str:
    """The digest of a compiled function (or its Python function): what its key depends on."""
    py = getattr(fn, "py_func", fn)
    return _digester.function(py)


# ----------------------------------------------------------------------------- cells

# Compiled code calls a rule through a cell holding the rule's address, named by a symbol
# (jit.py, ``RuleDispatcher``): the caller's code then holds no copy of the callee's (numba
# links every callee's code into each caller and optimises it again there, so compile time
# grew with the depth of the call tree). A cached rule's symbol is named by its content
# (the digest and the argument types), so a cache entry's calls mean the same code in every
# process; a rule that is not cached gets a symbol of its own in this process.
CELL_PREFIX = ".epcsim.rule$"
CELLS: dict[str, Any] = {}
# symbol -> (the callee's digest, its argument types), for the cache entries of callers.
CELL_SOURCES: dict[str, tuple[str, tuple[Any, ...]]] = {}
_private_cells = iter(range(1 << 62))


def cell_symbol(dispatcher: Any, args: tuple[Any, ...]) -> str:
    """The symbol of ``dispatcher``'s overload for ``args``."""
    if isinstance(getattr(dispatcher, "_cache", None), ContentCache):
        d = digest(dispatcher.py_func)
        h = hashlib.sha256(f"{d}:{args!r}:{sorted(dispatcher.targetoptions.items())!r}"
                           .encode()).hexdigest()[:40]
        CELL_SOURCES[CELL_PREFIX + h] = (d, tuple(args))
        return CELL_PREFIX + h
    return f"{CELL_PREFIX}p{next(_private_cells)}"


def define_cell(symbol: str, address: int, keep: Any = None) -> None:
    """Make ``symbol`` name a cell holding ``address`` (once per process). ``keep`` (the
    compile result whose code it is) stays alive as long as the cell: callers compiled
    later call that code, whatever becomes of the dispatcher that made it."""
    import ctypes

    import llvmlite.binding as llb

    if symbol not in CELLS:
        cell = ctypes.c_void_p(address)
        CELLS[symbol] = (cell, keep)
        llb.add_symbol(symbol, ctypes.addressof(cell))


# A deferred call (jit.deferred) goes through a cell its caller does not fill: the cell is
# null until something compiles the callee for the call's types, and a cache entry that
# calls it loads without compiling the callee. Its dependency is recorded under this mark.
DEFERRED = "deferred"


def deferred_symbol(dispatcher: Any, args: tuple[Any, ...]) -> str:
    """The cell a deferred call of ``dispatcher`` with ``args`` goes through."""
    d = digest(dispatcher.py_func)
    h = hashlib.sha256(f"{DEFERRED}:{d}:{args!r}".encode()).hexdigest()[:40]
    sym = f"{CELL_PREFIX}{DEFERRED}${h}"
    CELL_SOURCES[sym] = (DEFERRED, tuple(args))
    return sym


def fill_cell(symbol: str, address: int, keep: Any) -> None:
    """Put ``address`` in ``symbol``'s cell (a deferred call's, defined null before)."""
    if symbol in CELLS:
        cell = CELLS[symbol][0]
        cell.value = address
        CELLS[symbol] = (cell, keep)
    else:
        define_cell(symbol, address, keep)


def _cells_called(library: Any) -> list[str]:
    return sorted(gv.name for gv in library._final_module.global_variables
                  if gv.name.startswith(CELL_PREFIX))


_EXTENSION_DIGEST: list[str] = []


def _extension_digest() -> str:
    if not _EXTENSION_DIGEST:
        h = hashlib.sha256()
        for fn in EXTENSIONS:
            h.update(_digester.function(fn).encode())
        _EXTENSION_DIGEST.append(h.hexdigest())
    return _EXTENSION_DIGEST[0]


# ----------------------------------------------------------------------------- the cache

class _Locator(_CacheLocator):  # type: ignore[misc]
    """The folder of :func:`code_dir`, whatever file the function lives in."""

    def __init__(self, py_func: Callable[..., Any], py_file: str) -> None:
        self._py_func = py_func
        self._py_file = py_file

    def ensure_cache_path(self) -> None:
        os.makedirs(self.get_cache_path(), exist_ok=True)

    def get_cache_path(self) -> str:
        return str(code_dir())

    def get_source_stamp(self) -> str:
        return "content-keyed"

    def get_disambiguator(self) -> str:
        return "k"

    @classmethod
    def from_function(cls, py_func: Callable[..., Any], py_file: str) -> _Locator:
        return cls(py_func, py_file)


class _Impl(CompileResultCacheImpl):  # type: ignore[misc]
    _locator_classes: ClassVar[list[type]] = [_Locator]

    def get_filename_base(self, fullname: str, abiflags: str) -> str:
        return fullname.replace("<", "").replace(">", "")


class _KeyedFile:
    """One file per key, named by the key's digest: no index to race over."""

    def __init__(self, folder: str, base: str) -> None:
        self.folder = folder
        self.base = base

    def path(self, key: Any) -> str:
        name = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
        return os.path.join(self.folder, f"{self.base}.{name}.nbc")

    def load(self, key: Any) -> Any:
        import pickle

        try:
            with open(self.path(key), "rb") as f:
                stored_key, data = pickle.loads(f.read())
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            return None
        return data if stored_key == repr(key) else None

    def save(self, key: Any, data: Any) -> None:
        path = self.path(key)
        tmp = f"{path}.tmp.{uuid.uuid4().hex[:16]}"
        try:
            with open(tmp, "wb") as f:
                f.write(dumps((repr(key), data)))
            os.replace(tmp, path)
        except OSError:
            # An unwritable cache costs a compile next time, never the run.
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def flush(self) -> None:
        pass

    # A compile in progress in another process (pytest's workers, `epcsim compile`'s, the
    # side process of a first run: epcsim.compiling) holds its entry's lock file; this
    # process then waits for the entry instead of compiling the same rule again. Rules call
    # rules without cycles, so two processes waiting on each other's locks cannot happen.
    def lock_path(self, key: Any) -> str:
        return self.path(key) + ".lock"

    def try_lock(self, key: Any) -> bool:
        """Whether this process may compile ``key``: it took the lock, or nobody can."""
        path = self.lock_path(key)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _lock_holder(path)
                if holder == os.getpid():
                    return True
                if holder is not None and _alive(holder):
                    return False
                try:                # its process is gone: a stale lock
                    os.unlink(path)
                except OSError:
                    pass
                continue
            except FileNotFoundError:
                try:                # a first compile: the cache's folder is made here
                    os.makedirs(self.folder, exist_ok=True)
                except OSError:
                    return True
                continue
            except OSError:
                return True         # an unwritable cache: compile, as without one
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            HELD_LOCKS.add(path)
            return True
        return True

    def unlock(self, key: Any) -> None:
        path = self.lock_path(key)
        if path in HELD_LOCKS:
            HELD_LOCKS.discard(path)
            try:
                os.unlink(path)
            except OSError:
                pass

    def wait(self, key: Any, timeout: float) -> Any:
        """The entry once the process holding its lock saved it; None when that process
        gave up (its lock is gone, it died) or after ``timeout`` seconds."""
        import time

        deadline = time.monotonic() + timeout
        path = self.lock_path(key)
        while time.monotonic() < deadline:
            stored = self.load(key)
            if stored is not None:
                return stored
            holder = _lock_holder(path)
            if holder is None or not _alive(holder):
                return self.load(key)
            time.sleep(0.02)
        return None


HELD_LOCKS: set[str] = set()
# How long a process waits for another's compile of one rule before compiling it itself.
LOCK_WAIT_S = 600.0


def _lock_holder(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or "0") or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_held_locks() -> None:
    """Drop every lock this process holds (a compile that raised, the process ending)."""
    for path in list(HELD_LOCKS):
        HELD_LOCKS.discard(path)
        try:
            os.unlink(path)
        except OSError:
            pass


atexit.register(release_held_locks)


class ContentCache(FunctionCache):  # type: ignore[misc]
    """numba's function cache with epcsim's keys and folder (see the module docstring)."""

    _impl_class = _Impl

    def __init__(self, py_func: Callable[..., Any]) -> None:
        self._name = repr(py_func)
        self._py_func = py_func
        self._impl = self._impl_class(py_func)
        self._cache_path = self._impl.locator.get_cache_path()
        self._cache_file = _KeyedFile(self._cache_path, self._impl.filename_base)
        self.enable()

    def _index_key(self, sig: Any, codegen: Any) -> Any:
        return (str(sig), codegen.magic_tuple(), digest(self._py_func), _extension_digest())

    def _save_overload(self, sig: Any, data: Any) -> None:
        """Save with the cells its code calls: (symbol, digest, argument types) each."""
        if not self._enabled:
            return
        key = self._index_key(sig, data.library.codegen)
        try:
            if not self._impl.check_cachable(data):
                return
            deps = []
            for sym in _cells_called(data.library):
                if sym not in CELL_SOURCES:
                    return      # calls a rule that is not cached: no other process has it
                deps.append((sym, *CELL_SOURCES[sym]))
            self._impl.locator.ensure_cache_path()
            self._cache_file.save(key, (tuple(deps), self._impl.reduce(data)))
        except OSError:
            pass
        finally:
            self._cache_file.unlock(key)

    def _load_overload(self, sig: Any, target_context: Any) -> Any:
        """Load an entry once the rules it calls are there (loaded or compiled first); a
        rule that cannot be found makes it a miss."""
        if not self._enabled:
            return None
        key = self._index_key(sig, target_context.codegen())
        stored = self._cache_file.load(key)
        if stored is None and not self._cache_file.try_lock(key):
            stored = self._cache_file.wait(key, LOCK_WAIT_S)
            if stored is None:
                self._cache_file.try_lock(key)
        if stored is None:
            return None         # this process compiles it (and holds its lock until saved)
        if not (isinstance(stored, tuple) and len(stored) == 2
                and isinstance(stored[0], tuple)):
            return None         # not an entry of this format: compile anew
        deps, data = stored
        for sym, callee_digest, args in deps:
            if sym in CELLS:
                continue
            if callee_digest == DEFERRED:
                define_cell(sym, 0)     # filled when the callee is compiled, if ever
                continue
            callee = _digester.dispatchers.get(callee_digest)
            if callee is None:
                return None
            callee.compile(tuple(args))
            if sym not in CELLS:
                return None
        return self._impl.rebuild(target_context, data)
