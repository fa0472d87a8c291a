"""epcsim.jitcache: a cache entry depends on the code compiled into it and on nothing else."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from numba.core import config

from epcsim import jitcache

pytestmark = pytest.mark.skipif(config.DISABLE_JIT, reason="compiles with numba")

SRC = Path(__file__).resolve().parents[1] / "src"

CALLEE = '''
from epcsim.jit import njit

LIMIT = 7

@njit
def leaf(x: int) -> int:
    """Clamp ``x``."""
    return min(x, LIMIT)  # the limit
'''

CALLER = '''
from epcsim.jit import njit
import {pkg}.callee as callee

@njit
def top(x: int) -> int:
    return callee.leaf(x) + 1

@njit
def apart(x: int) -> int:
    return x * 2
'''


def _package(tmp: Path, callee: str) -> ModuleType:
    """A fresh package of two modules, imported anew under one name."""
    pkg = "jitcache_probe"
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[name]
    d = tmp / pkg
    d.mkdir()
    (d / "__init__.py").write_text("")
    (d / "callee.py").write_text(callee)
    (d / "caller.py").write_text(CALLER.format(pkg=pkg))
    sys.path.insert(0, str(tmp))
    try:
        return importlib.import_module(f"{pkg}.caller")
    finally:
        sys.path.remove(str(tmp))


def _digests(tmp: Path, callee: str) -> dict[str, str]:
    m = _package(tmp, callee)
    return {"top": jitcache.digest(m.top), "apart": jitcache.digest(m.apart),
            "leaf": jitcache.digest(m.callee.leaf)}


@pytest.mark.parametrize("edit", [
    CALLEE.replace("# the limit", "# the largest value"),
    CALLEE.replace('"""Clamp ``x``."""', '"""Clamp ``x`` to the limit."""'),
    CALLEE.replace("LIMIT = 7", "\n\nLIMIT = 7  # moved down"),
])
def test_comments_docstrings_and_lines_change_no_key(tmp_path: Path, edit: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _digests(tmp_path / "a", CALLEE) == _digests(tmp_path / "b", edit)


@pytest.mark.parametrize("edit", [
    CALLEE.replace("return min(x, LIMIT)", "return max(x, LIMIT)"),
    CALLEE.replace("LIMIT = 7", "LIMIT = 8"),
])
def test_a_callee_edit_changes_its_callers_keys_and_no_others(tmp_path: Path, edit: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = _digests(tmp_path / "a", CALLEE)
    after = _digests(tmp_path / "b", edit)
    assert after["leaf"] != before["leaf"]
    assert after["top"] != before["top"]          # the caller contains the callee
    assert after["apart"] == before["apart"]      # the same file, but nothing of the edit


def test_linking_a_callee_changes_its_callers_keys(tmp_path: Path) -> None:
    """A caller compiled over a callee it calls through a cell holds other code than one
    the callee is linked into (``link``): its key says which."""
    linked = CALLEE.replace("from epcsim.jit import njit", "from epcsim.jit import njit_linked")
    linked = linked.replace("@njit\ndef leaf", "@njit_linked\ndef leaf")
    assert "@njit_linked" in linked
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = _digests(tmp_path / "a", CALLEE)
    after = _digests(tmp_path / "b", linked)
    assert after["top"] != before["top"]
    assert after["apart"] == before["apart"]


def _run(code: str, tree: Path, cache: Path) -> dict[str, int]:
    env = dict(os.environ, PYTHONPATH=str(tree), EPCSIM_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


PROBE = '''
import json
from pkg.caller import top
assert top(10) == 8
s = top.stats
print(json.dumps({"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values())}))
'''


def test_the_cache_survives_a_reinstall_of_identical_sources(tmp_path: Path) -> None:
    """Two copies of the same sources in two places (an install, then a reinstall): the
    second finds what the first compiled, in the user's cache folder."""
    cache = tmp_path / "cache"
    trees = []
    for name in ("first", "second"):
        d = tmp_path / name / "pkg"
        d.mkdir(parents=True)
        (d / "__init__.py").write_text("")
        (d / "callee.py").write_text(CALLEE)
        (d / "caller.py").write_text(CALLER.format(pkg="pkg"))
        trees.append(tmp_path / name)
    env_tree = os.pathsep.join([str(trees[0]), str(SRC)])
    first = _run(PROBE, Path(env_tree), cache)
    assert first == {"hits": 0, "misses": 1}
    assert any(jitcache.code_dir().name == p.name for p in cache.iterdir())
    shutil.rmtree(trees[0])
    second = _run(PROBE, Path(os.pathsep.join([str(trees[1]), str(SRC)])), cache)
    assert second == {"hits": 1, "misses": 0}
    # An edit to the callee: the caller misses.
    (trees[1] / "pkg" / "callee.py").write_text(CALLEE.replace("LIMIT = 7", "LIMIT = 9"))
    third = _run(PROBE.replace("== 8", "== 10"),
                 Path(os.pathsep.join([str(trees[1]), str(SRC)])), cache)
    assert third == {"hits": 0, "misses": 1}


def test_a_closure_made_anew_gets_its_own_key() -> None:
    """Closures of one code over different cells have different keys, also when a new one
    reuses the address of a closure that is gone (the digests are memoised per object)."""
    import gc

    from epcsim.jit import njit

    @njit
    def one() -> int:
        return 1

    @njit
    def two() -> int:
        return 2

    def make(f):  # type: ignore[no-untyped-def]
        def g() -> int:
            return f() + 1
        return g

    firsts = [make(one) for _ in range(200)]
    of_one = {jitcache.digest(g) for g in firsts}
    del firsts
    gc.collect()
    # Most of these take the addresses of the closures just freed: a memo by bare id gave
    # them the digest of the closure over ``one``.
    seconds = [make(two) for _ in range(200)]
    of_two = {jitcache.digest(g) for g in seconds}
    assert len(of_one) == 1 and len(of_two) == 1 and of_one != of_two


HOLD = '''
import json, pathlib, time
from numba.core import types
from pkg.caller import top
key = top._cache._index_key((types.int64,), top.targetctx.codegen())
assert top._cache._cache_file.try_lock(key)         # a compile of top begins here
pathlib.Path({marker!r}).write_text("locked")
time.sleep(1.5)
assert top(10) == 8                                 # compiles, saves, unlocks
s = top.stats
print(json.dumps({{"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values())}}))
'''

AFTER_MARKER = '''
import pathlib, time
while not pathlib.Path(MARKER).exists():
    time.sleep(0.01)
''' + PROBE


def _two_trees(tmp_path: Path) -> Path:
    d = tmp_path / "tree" / "pkg"
    d.mkdir(parents=True)
    (d / "__init__.py").write_text("")
    (d / "callee.py").write_text(CALLEE)
    (d / "caller.py").write_text(CALLER.format(pkg="pkg"))
    return Path(os.pathsep.join([str(tmp_path / "tree"), str(SRC)]))


def test_a_process_waits_for_a_compile_in_progress_and_loads_it(tmp_path: Path) -> None:
    tree, cache, marker = _two_trees(tmp_path), tmp_path / "cache", tmp_path / "marker"
    env = dict(os.environ, PYTHONPATH=str(tree), EPCSIM_CACHE_DIR=str(cache))
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(marker=str(marker))],
                              env=env, stdout=subprocess.PIPE, text=True)
    waiter = _run(AFTER_MARKER.replace("MARKER", repr(str(marker))), tree, cache)
    out, _ = holder.communicate(timeout=120)
    assert json.loads(out.strip().splitlines()[-1]) == {"hits": 0, "misses": 1}
    assert waiter == {"hits": 1, "misses": 0}        # it waited, then loaded: one compile
    assert not list(cache.rglob("*.lock"))


def test_a_lock_left_by_a_dead_process_is_broken(tmp_path: Path) -> None:
    tree, cache = _two_trees(tmp_path), tmp_path / "cache"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    plant = f'''
from numba.core import types
from pkg.caller import top
key = top._cache._index_key((types.int64,), top.targetctx.codegen())
path = top._cache._cache_file.lock_path(key)
import os
os.makedirs(os.path.dirname(path), exist_ok=True)
open(path, "w").write("{dead}")
print('{{}}')
'''
    _run(plant, tree, cache)
    assert list(cache.rglob("*.lock"))
    assert _run(PROBE, tree, cache) == {"hits": 0, "misses": 1}
    assert not list(cache.rglob("*.lock"))
