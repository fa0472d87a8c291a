"""Whatever a user types, every command succeeds or exits 2 with one line, in bounded time
and memory: scenarios, sweep files, results directories and flags drawn by Hypothesis, in
valid shapes with hostile values and in hostile shapes.

Each example is cheap (an EPC of a few hundred pages, a few thousand requests, the lru
engine unless a drawn policy asks otherwise), so the whole file runs in well under a minute
once the engines are in the cache; the first test compiles what the others run.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epcsim.cli import main

# A bounded run takes well under this on a loaded machine; a refusal takes milliseconds.
SECONDS = 30
# Memory allocated during one command (numpy's arrays included, tracemalloc sees them): a
# small run takes a few MB; a value that slipped past a bound (a trillion requests, a
# terabyte EPC) would ask for many GB, or die trying.
MAX_BYTES = 1 << 30

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BASE: dict[str, Any] = {
    "platform": {"preset": "client-sgx1", "epc_size": "1MiB"},
    "kernel": {"policy": "lru"},
    "run": {"requests": 2000, "seed": 1},
    "enclaves": [{"name": "a", "size": "2MiB", "workload": "zipf"},
                 {"name": "b", "size": "512KiB", "workload": "scan"}],
}

# Keys a hostile value may land on (dotted, list items by index).
KEYS = ["platform.preset", "platform.epc_size", "platform.nodes", "platform.costs.ewb",
        "platform.costs.request", "kernel.policy", "kernel.low", "kernel.high", "kernel.batch",
        "run.requests", "run.seed", "run.series_step_s", "run.mrc", "run.backing_dir",
        "enclaves.0.name", "enclaves.0.size", "enclaves.0.workload", "enclaves.0.alpha",
        "enclaves.0.weight", "enclaves.0.phases", "enclaves.0.working_set", "enclaves.0.trace",
        "enclaves.0.format", "enclaves.0.cgroup", "enclaves.0.epc_limit", "enclaves.1.name",
        "enclaves.1.cgroup", "enclaves.1.memory_limit", "cgroups", "vms", "pods", "cluster",
        "virt.requests", "virt.guest_high", "enclaves", "run", "nonsense"]

# Values each key takes, so that a fair share of the drawn scenarios run to the end.
VALID: dict[str, list[Any]] = {
    "platform.preset": ["client-sgx1", "xeon-icx"], "platform.epc_size": ["1MiB", 524288],
    "platform.nodes": [1, 2], "platform.costs.ewb": [0, 20000], "platform.costs.request": [1],
    "kernel.policy": ["sgx", "lru", "fifo", "clock"], "kernel.low": [0, 8],
    "kernel.high": [16, 64], "kernel.batch": [1, 32], "run.requests": [1, 500, 4000],
    "run.seed": [0, 7, 4294967295], "run.series_step_s": [1e-6, 0.5], "run.mrc": [True],
    "enclaves.0.name": ["db", "é"], "enclaves.0.size": ["4KiB", "3MiB", 8192],
    "enclaves.0.workload": ["uniform", "phases"], "enclaves.0.alpha": [0.5, 10],
    "enclaves.0.weight": [1e-3, 1e6], "enclaves.0.phases": [1, 10],
    "enclaves.0.working_set": ["64KiB"], "enclaves.1.name": ["c"],
    "enclaves.0.cgroup": ["/t", "//t/u/"], "enclaves.0.epc_limit": ["512KiB"],
    "enclaves.1.cgroup": ["/t"], "enclaves.1.memory_limit": ["1MiB"],
    "cgroups": [[{"path": "/t", "epc_limit": "768KiB"}]],
    "vms": [[{"name": "v", "epc_size": "1MiB", "enclaves": [{"name": "e", "size": "64KiB"}]}]],
    "virt.requests": [200], "virt.guest_high": [32],
}

HOSTILE_TEXT = ["1e309", "nan", "inf", "-1", "0", "0.5", "4KiB", "1MiB", "2TiB", "93.5MiB",
                "", " ", "/", "..", "/a/../b", "a/b", "\x00", "\u0007", "x" * 300,
                "/dev/zero", ".", "sgx", "lru", "zipf", "phases", "npy", "/nonexistent/dir",
                "9" * 400]

scalars = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.sampled_from([0, 1, -1, 2 ** 31, 2 ** 63 - 1, 2 ** 64, 10 ** 12, 16, 64, 300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=12),
    st.booleans(),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["name", "size", "path", "epc_size", "workload", "x", "epc_limit"]), inner,
        max_size=3)), max_leaves=6)


def toml(doc: dict[str, Any]) -> str:
    """``doc`` as TOML, every table inline (NaN and infinities as TOML writes them)."""
    return "".join(f"{q(k)} = {_toml(v)}\n" for k, v in doc.items() if v is not None)


def q(text: str) -> str:
    """A TOML basic string (JSON's escapes, but no surrogate pairs)."""
    return json.dumps(text, ensure_ascii=False)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return q(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{q(k)} = {_toml(x)}" for k, x in v.items()
                               if x is not None) + "}"
    return q(str(v))


def set_key(doc: dict[str, Any], key: str, value: Any) -> None:
    parts: list[Any] = [int(p) if p.isdigit() else p for p in key.split(".")]
    node: Any = doc
    for p in parts[:-1]:
        if isinstance(p, int):
            node = node[p] if isinstance(node, list) and p < len(node) else None
        else:
            node = node.setdefault(p, {}) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(parts[-1], int):
        if isinstance(node, list) and parts[-1] < len(node):
            node[parts[-1]] = value
    elif isinstance(node, dict):
        node[parts[-1]] = value


def invoke(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run the command in this process; its status and stderr, under the time bound."""
    import os

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        os.chdir(here)
    elapsed = time.perf_counter() - t0
    assert elapsed < SECONDS, f"{argv} took {elapsed:.1f} s"
    assert peak < MAX_BYTES, f"{argv}: {peak >> 20} MiB allocated"
    return status, err.getvalue()


def succeeds_or_refuses(status: int, err: str, argv: list[str]) -> None:
    assert "Traceback" not in err, err
    assert status in (0, 2), (argv, status, err)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("epcsim: error: "), (argv, err)


def test_a_plain_run_compiles_what_the_fuzz_runs() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "s.toml").write_text(toml(BASE))
        status, err = invoke(["run", "s.toml", "--json", "--out", "R"], d)
        assert status == 0, err
        assert (d / "R" / "results.json").is_file()


def change(key: str) -> st.SearchStrategy[tuple[str, Any]]:
    valid = VALID.get(key)
    value = st.one_of(st.sampled_from(valid), values) if valid else values
    return st.tuples(st.just(key), value)


@FUZZ
@given(changes=st.lists(st.sampled_from(KEYS).flatmap(change), max_size=3),
       as_json=st.booleans(), out=st.booleans())
def test_scenarios_with_hostile_values(changes: list[tuple[str, Any]], as_json: bool,
                                       out: bool) -> None:
    doc = json.loads(json.dumps(BASE))
    for key, value in changes:
        set_key(doc, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        name = "s.json" if as_json else "s.toml"
        (d / name).write_text(json.dumps(doc) if as_json else toml(doc))
        argv = ["run", name, "--json"] + (["--out", "R"] if out else [])
        status, err = invoke(argv, d)
        succeeds_or_refuses(status, err, argv)
        if out:
            # A result is whole (its index lists files that exist) or absent.
            assert (d / "R" / "results.json").is_file() == (status == 0)
        assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []


@FUZZ
@given(doc=st.one_of(values, st.binary(max_size=64).map(lambda b: b.decode("latin-1"))),
       as_json=st.booleans())
def test_scenarios_of_hostile_shapes(doc: Any, as_json: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        name = "s.json" if as_json else "s.toml"
        text = doc if isinstance(doc, str) else (
            json.dumps(doc) if as_json or not isinstance(doc, dict) else toml(doc))
        (d / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        status, err = invoke(["run", name], d)
        succeeds_or_refuses(status, err, ["run", name])
        # The same text as a sweep file: its own keys and tables are checked as strictly.
        (d / "w.toml").write_text(text if isinstance(doc, str) or not isinstance(doc, dict)
                                  else toml(doc), encoding="utf-8", errors="surrogatepass")
        status, err = invoke(["sweep", "w.toml", "--out", "O"], d)
        succeeds_or_refuses(status, err, ["sweep", "w.toml"])


GRID_KEYS = ["run.seed", "run.seed", "platform.epc_size", "kernel.batch", "kernel.high",
             "enclaves.0.size", "enclaves.0.size", "enclaves.1.alpha", "enclaves.5.size",
             "platform.costs.ewb",
             "run.requests", "", "..", "run..seed", "enclaves.0", "platform"]


@FUZZ
@given(grid=st.dictionaries(st.sampled_from(GRID_KEYS), st.one_of(
    st.lists(st.one_of(st.sampled_from([1, 2, "1MiB", "2MiB", 16, 0.8]), scalars), max_size=3),
    st.lists(st.sampled_from([1, 2, "1MiB", "2MiB", 16, 0.8]), min_size=1, max_size=2),
    scalars), min_size=0, max_size=2),
       base_in_file=st.booleans(), plot=st.booleans())
def test_sweeps_with_hostile_grids(grid: dict[str, Any], base_in_file: bool,
                                   plot: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if base_in_file:
            (d / "b.toml").write_text(toml(BASE))
            head = '[sweep]\nbase = "b.toml"\n'
        else:
            head = "".join(f"base.{k} = {_toml(v)}\n" for k, v in BASE.items())
        (d / "w.toml").write_text(head + "[grid]\n" + "".join(
            f"{q(k)} = {_toml(v)}\n" for k, v in grid.items()))
        argv = ["sweep", "w.toml", "--out", "O", "--json"]
        if plot:
            argv += ["--plot", "miss_ratio", "--x", next(iter(grid), "run.seed")]
        status, err = invoke(argv, d)
        succeeds_or_refuses(status, err, argv)
        assert (d / "O" / "results.json").is_file() == (status == 0)


SUMMARY_KEYS = ["scenario", "faults", "epc_pages", "miss_ratio", "policy", "per_enclave",
                "vms", "cgroups", "slowdown", "platform"]
COLUMNS = ["time_s", "free_pages", "faults", "ewb", "tenant", "page", "name", "pages",
           "owner", "epc_pages", "miss_ratio", "cgroup", "current_pages", "max_pages", "point",
           "param.platform.epc_size", "footprint_pages", "slowdown"]
column_values = st.one_of(st.lists(st.integers(-5, 10 ** 6), min_size=2, max_size=2),
                          st.lists(st.floats(allow_nan=True), min_size=2, max_size=2),
                          st.lists(st.text(max_size=3), min_size=2, max_size=2))
tables = st.one_of(st.just(None), st.dictionaries(st.sampled_from(COLUMNS), column_values,
                                                   max_size=4))


@FUZZ
@given(summary=st.one_of(st.dictionaries(st.sampled_from(SUMMARY_KEYS), values, max_size=5),
                         values),
       index=st.one_of(st.sampled_from(["good", "good", None]), values),
       tables=st.dictionaries(st.sampled_from(["series", "faults", "enclaves", "mrc",
                                               "enclave_series", "cgroup_series", "sweep",
                                               "x"]), tables, max_size=3),
       out=st.sampled_from([None, "rep", "no/such/dir", "R", ""]))
def test_report_on_hostile_directories(summary: Any, index: Any, tables: dict[str, Any],
                                       out: str | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        r = d / "R"
        r.mkdir()
        (r / "summary.json").write_text(json.dumps(summary))
        for t, cols in tables.items():
            if cols is None:  # a file that only looks like Parquet
                (r / f"{t}.parquet").write_bytes(b"PAR1" + bytes(20) + b"PAR1")
            else:
                pq.write_table(pa.table(cols) if cols else pa.table({"x": [1]}),
                               r / f"{t}.parquet")
        if index == "good":
            index = {"format": 1, "kind": "run",
                     "files": ["summary.json"] + [f"{t}.parquet" for t in tables]}
        if index is not None:
            (r / "results.json").write_text(json.dumps(index))
        argv = ["report", "R"] + ([] if out is None else ["--out", out])
        status, err = invoke(argv, d)
        succeeds_or_refuses(status, err, argv)


TOKENS = ["--json",
          "--out", "--epc-pages", "--format", "npy", "csv", "lcs", "--policy", "lru", "sgx",
          "--platform", "--columns", "obj=1", "obj=99999999999999999999", "--workers", "--plot",
          "--x", "--seed", "--epc-size", "-k", "--walk", "--suite", "t.npy", "t.csv", "s.toml",
          "fifo", ".", "/dev/null", "1e309", "-1", "0", "64", str(1 << 70), "nan", "1TiB",
          "x" * 300, "--debug-not", "--help"]


@FUZZ
@given(command=st.sampled_from(["run", "sweep", "replay", "report", "demo", "selftest",
                                "nonsense"]),
       args=st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)), max_size=6))
def test_flags(command: str, args: list[str]) -> None:
    argv = [command, *args]
    # Commands that would do real work with flags that happen to be valid are kept cheap:
    # the demo only walks, selftests only by a name that does not exist; compile (which
    # takes --workers and --all alone) is left to benchmarks/careless.py.
    if "demo" in argv and "--walk" not in argv:
        argv = argv + ["--walk"]
    if "selftest" in argv:
        argv = argv + ["-k", "no-such-test"]
    argv = [a for a in argv if "\x00" not in a]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        np.save(d / "t.npy", np.arange(3000, dtype=np.int64) % 200)
        (d / "t.csv").write_text("1\n2\n3\n")
        (d / "s.toml").write_text(toml(BASE))
        import os

        os.mkfifo(d / "fifo")
        status, err = invoke(argv, d)
        succeeds_or_refuses(status, err, argv)
