"""The ``epcsim`` command.

Bad input exits with status 2 and one line on stderr,
``epcsim: error: <what is wrong>``; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from epcsim import __version__

console = Console()


# The per-VM columns a terminal shows (--json has them all).
VM_COLUMNS = ("name", "mode", "status", "guest_faults", "guest_ewb", "host_ewb", "host_eldu",
              "vm_exits", "conflict_exits", "slowdown")


def announced(unit: str, side: str = "") -> Any:
    """Say on stderr, once, when the command is about to compile (:mod:`epcsim.compiling`)."""
    from epcsim.compiling import announced as _announced

    return _announced(unit, side=side)


# Bounds of the flags (docs/bounds.md); a scenario's are in epcsim.workload.scenario.
MAX_SEED = (1 << 32) - 1
MAX_SELFTEST_EPC = 1 << 30          # the selftests fill their EPC: 1 GiB is 262144 pages
MAX_REPLAY_EPC_PAGES = (512 << 30) // 4096
MAX_WORKERS = 256


class UsageError(click.ClickException):
    """Bad input from the user: one line on stderr, exit status 2."""

    exit_code = 2


def _need_plots(what: str) -> None:
    """Stop before any work when a command that draws has no matplotlib (the plots extra)."""
    from epcsim.report.plots import PlotsMissing, require_plots

    try:
        require_plots(what)
    except PlotsMissing as e:
        raise UsageError(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="epcsim")
def app() -> None:
    """epcsim: an executable model of the SGX EPC memory manager."""


@app.command()
@click.option("--walk", is_flag=True, help="Walk one enclave through its leaves instead.")
@click.option("--metadata", is_flag=True, help="The walk without page contents (implies --walk).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (or the steps) as JSON.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the walk's keys.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write the results, a working-set sweep and the report here.")
def demo(walk: bool, metadata: bool, as_json: bool, seed: int, out_dir: str | None) -> None:
    """Two enclaves on an oversubscribed 93.5 MiB client EPC: paging, summary, report."""
    if walk or metadata:
        if out_dir is not None:
            raise UsageError("--out goes with the scenario demo, not --walk")
        _walk(metadata, as_json, seed)
        return
    from pathlib import Path

    from epcsim.demo_scenario import demo_requests, run_demo, write_demo

    if out_dir is not None:
        _need_plots("epcsim demo --out")
        _check_out(out_dir)
    total = demo_requests()
    with announced("demo"), _progress(as_json) as bar:
        sc, out = run_demo(progress=_advancer(bar, "demo", total))
    files: list[Path] = []
    if out_dir is not None:
        try:
            with _progress(as_json) as bar:
                task = bar.add_task("working-set sweep", total=None) if bar else None
                files = write_demo(Path(out_dir), sc, out, sweep_progress=(
                    lambda d, t: bar.update(task, completed=d, total=t)) if bar else None)
        except ValueError as e:
            raise UsageError(str(e)) from None
        except OSError as e:
            raise UsageError(f"cannot write results: {e.strerror} ({out_dir})") from None
    if as_json:
        click.echo(json.dumps(out.summary, indent=2))
        return
    _print_demo(out.summary, sc.resolved_platform().epc_bytes)
    if files:
        console.print(f"report: {files[-1]}")


DEMO_MEASURES = ("epc_pages", "footprint_pages", "requests", "faults", "miss_ratio", "eaug",
                 "eldu", "ewb", "etrack", "ipi", "ksgxd_wakeups", "ebusy_waits",
                 "virtual_time_s", "waiting_for_ksgxd_s", "slowdown", "sgx_nr_free_pages",
                 "wall_s")


def _and_vms(summary: dict) -> str:  # type: ignore[type-arg]
    vms = summary.get("vms") or []
    if not vms:
        return ""
    modes = sorted({str(v.get("mode")) for v in vms})
    return f" and {len(vms)} VM{'s' if len(vms) > 1 else ''} ({', '.join(modes)})"


def _print_demo(summary: dict, epc_bytes: int) -> None:  # type: ignore[type-arg]
    # The faults that found nothing free waited this long for ksgxd's pages, of the
    # virtual time above.
    waited = (summary.get("virtual_time_breakdown_s") or {}).get("waiting_for_ksgxd")
    summary = {**summary, "waiting_for_ksgxd_s": waited} if waited is not None else summary
    _print_summary({k: summary[k] for k in DEMO_MEASURES if k in summary},
                   f"epcsim demo: {summary.get('enclaves')} enclaves"
                   f"{_and_vms(summary)} on a {epc_bytes / 2**20:g} MiB EPC "
                   f"({summary.get('platform')})")
    shown = {"per_enclave": ("name", "pages", "requests", "faults", "eaug", "eldu",
                             "miss_ratio"),
             "vms": VM_COLUMNS}
    for key, title in (("per_enclave", "per enclave"), ("vms", "per VM")):
        _print_rows(title, summary.get(key) or [], shown[key])


def _print_rows(title: str, rows: list[dict], columns: tuple[str, ...]) -> None:  # type: ignore[type-arg]
    """A table of the columns some row has, values with their units. When they would not
    fit the terminal side by side, the table is turned: a line per column, a column per
    row. A status's reason is printed under the table, not inside a cell."""
    if not rows:
        return
    cols = [c for c in columns if any(c in r for r in rows)]

    def cell(r: dict, c: str) -> str:  # type: ignore[type-arg]
        if c == "status":
            return _status(str(r.get(c, "")))
        if (c == "pages" or c.endswith("_pages")) and isinstance(r.get(c), int):
            return f"{r[c]:,}"   # a count in a narrow column; the summary gives the MiB
        return _value(c, r[c]) if c in r else ""

    cells = [[cell(r, c) for c in cols] for r in rows]
    width = sum(max([len(c)] + [len(x[i]) for x in cells]) + 3 for i, c in enumerate(cols))
    if width > console.width and len(rows) <= 6:
        names = [str(r.get("name", i)) for i, r in enumerate(rows)]
        turned = [[c] + [x[i] for x in cells] for i, c in enumerate(cols) if c != "name"]
        console.print(_table(title, [""] + names, turned, left=(0,)))
    else:
        console.print(_table(title, cols, cells, left=(0,)))
    for r in rows:
        status = str(r.get("status", "ok"))
        if ":" in status:
            console.print(f"{r.get('name', '')}: {status}", highlight=False)


def _value(key: str, value: object) -> str:
    """A summary value with its unit and thousands separators, as the report shows it."""
    from epcsim.report.html import fmt

    return fmt(key, value)


def _walk(metadata: bool, as_json: bool, seed: int) -> None:
    """Walk one enclave through its life on the processor model."""
    from epcsim.demo import enclave_life

    steps = enclave_life(content=not metadata, seed=seed)
    if as_json:
        click.echo(json.dumps({"steps": [s.__dict__ for s in steps]}, indent=2))
        return
    table = Table(title="One enclave on the SGX processor model")
    table.add_column("leaf", style="bold")
    table.add_column("result")
    table.add_column("what happened")
    for s in steps:
        style = "green" if s.result in ("SGX_SUCCESS", "ok", "free") else "yellow"
        table.add_row(s.leaf, f"[{style}]{s.result}[/{style}]", s.detail)
    console.print(table)


def parse_size(text: str) -> int:
    """Sizes like 4096, 93.5MiB, 64GiB, 8M, as scenarios take them."""
    from epcsim.workload.scenario import parse_size as parse

    try:
        return parse(text.strip(), hi=MAX_SELFTEST_EPC)
    except ValueError as e:
        raise UsageError(f"{e} (use e.g. 4MiB, 93.5MiB, 64GiB)") from None


def _check_out(out_dir: str) -> Any:
    """``--out``, checked before any work: its parent exists, and it is new, empty or an
    earlier result (epcsim.files)."""
    from epcsim.files import InputError, check_out

    try:
        return check_out(out_dir)
    except InputError as e:
        raise UsageError(str(e)) from None


@app.command()
@click.option("--suite", type=click.Choice(["sgx", "cgroup", "threat-model", "all"]),
              default="all", show_default=True,
              help="Which selftest suite to run.")
@click.option("--epc-size", default="4MiB", show_default=True,
              help="EPC of each test's machine (the oversubscribed tests use all of it).")
@click.option("-k", "names", multiple=True, help="Run only these tests (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def selftest(suite: str, epc_size: str, names: tuple[str, ...], as_json: bool) -> None:
    """Run the kernel's SGX selftests against the model."""
    from epcsim.selftest import run_suite, suites

    size = parse_size(epc_size)
    if size % 4096 or size < 64 * 4096:
        raise UsageError(f"--epc-size must be a multiple of 4 KiB and at least 256 KiB "
                         f"(got {epc_size})")
    chosen = list(suites()) if suite == "all" else [suite]
    known = {n for s in chosen for n in suites()[s]}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"no selftest named {unknown[0]!r} in suite {suite}")
    results = []
    with announced("content"), (console.status("running selftests...", spinner="dots")
                                if not as_json else _null()):
        for s in chosen:
            results.extend(run_suite(s, epc_size=size, names=list(names) or None))
    if as_json:
        click.echo(json.dumps({"tests": [
            {"name": r.name, "suite": r.suite, "passed": r.passed, "checks": len(r.checks),
             "seconds": round(r.seconds, 3), **({"error": r.error} if r.error else {})}
            for r in results]}, indent=2))
    else:
        table = Table(title=f"selftests on a {epc_size} EPC")
        table.add_column("test", style="bold")
        table.add_column("suite")
        table.add_column("result")
        table.add_column("what it checked")
        for r in results:
            res = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
            what = r.error if not r.passed else "; ".join(r.checks[-3:])
            table.add_row(r.name, r.suite, res, f"{len(r.checks)} checks, last: {what}")
        console.print(table)
        failed = sum(not r.passed for r in results)
        console.print(f"{len(results) - failed} passed, {failed} failed")
    if any(not r.passed for r in results):
        raise click.exceptions.Exit(1)


def parse_columns(text: str | None) -> dict[str, int | str] | None:
    """``obj=2,tenant=3`` (1-based numbers or header names) for CSV traces."""
    if not text:
        return None
    out: dict[str, int | str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--columns wants key=column pairs like obj=2,tenant=3 (got {text!r})")
        v = value.strip()
        if len(v) > 255 or len(key) > 64:
            raise UsageError(f"--columns: a key or column longer than allowed ({part[:40]!r})")
        if v.isdigit() and not (v.isascii() and 1 <= int(v) <= 1 << 16):
            raise UsageError(f"--columns: column numbers run from 1 to 65536 (got {v[:20]})")
        out[key.strip()] = int(v) if v.isdigit() else v
    return out


@app.command()
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["oracleGeneral", "lcs", "csv", "npy"]),
              help="Trace format (libCacheSim's binary formats, CSV, numpy) [default: what "
              "the name and the first bytes say]; zstd or gzip compression is recognised.")
@click.option("--epc-pages", type=click.IntRange(16, MAX_REPLAY_EPC_PAGES), required=True,
              help="EPC size in 4 KiB pages.")
@click.option("--policy", type=click.Choice(["sgx", "lru", "fifo", "clock"]), default="sgx",
              show_default=True, help="sgx: the whole kernel model; lru/fifo/clock: the "
              "manager's one-page-per-miss policies.")
@click.option("--platform", "platform_name", default="client-sgx1", show_default=True,
              help="Cost model and clock: client-sgx1, server-sgx1, xeon-icx.")
@click.option("--ksgxd", type=click.Choice(["clock", "instant"]), default="clock",
              show_default=True, help="When pages ksgxd writes back are free: at its own "
              "clock (a thread on another CPU), or at once (the model before, to compare).")
@click.option("--tlb-entries", type=click.IntRange(0, 1 << 16),
              help="Entries of each CPU's TLB [default: the platform's]; 0: no TLB, every "
              "access marks its page accessed.")
@click.option("--tlb-ways", type=click.IntRange(1, 127),
              help="Ways of each set of that TLB [default: the platform's].")
@click.option("--columns", help="CSV column map, e.g. obj=2,tenant=3,op=4 (1-based or names).")
@click.option("--fault-log", type=click.IntRange(0, 1 << 30),
              help="Faults kept in the fault sequence, the first ones (24 bytes each) "
              "[default: one per 16 EPC pages, at least 65 536, at most 1 048 576].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Also write summary.json, per-enclave metrics, the time series and the "
              "OS-visible fault sequence (Parquet) here.")
def replay(trace: str, fmt: str | None, epc_pages: int, policy: str, platform_name: str,
           ksgxd: str, tlb_entries: int | None, tlb_ways: int | None, columns: str | None,
           fault_log: int | None, as_json: bool, out_dir: str | None) -> None:
    """Replay a page-access TRACE on a platform and report what paging cost."""
    from epcsim.api import replay as replay_trace
    from epcsim.sim import costs
    from epcsim.sim.replay import ReplayError
    from epcsim.workload.traces import TraceError, open_trace

    try:
        plat = costs.preset(platform_name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        costs.with_tlb(plat, tlb_entries, tlb_ways)
    except ValueError as e:
        raise UsageError(f"--tlb-entries/--tlb-ways: {e} ({platform_name})") from None
    cols = parse_columns(columns)
    if out_dir is not None:
        _check_out(out_dir)
    try:
        reader = open_trace(trace, fmt, columns=cols)
        total = reader.count()
        with announced("replay", side=policy), _progress(as_json) as bar:
            res = replay_trace(trace, format=reader.fmt, epc_pages=epc_pages, policy=policy,
                               platform=platform_name, columns=cols, ksgxd=ksgxd,
                               progress=_advancer(bar, "replay", total),
                               tlb_entries=tlb_entries, tlb_ways=tlb_ways,
                               fault_log=fault_log)
    except TraceError as e:
        raise UsageError(str(e)) from None
    except (ReplayError, ValueError) as e:
        raise UsageError(f"{e} ({trace})") from None
    if out_dir is not None:
        try:
            res.save(out_dir)
        except ValueError as e:
            raise UsageError(str(e)) from None
        except OSError as e:
            raise UsageError(f"cannot write results: {e.strerror} ({out_dir})") from None
        _say_fault_log(res.summary, "--fault-log N keeps more")
    if as_json:
        click.echo(json.dumps(res.summary, indent=2))
        return
    _print_summary(res.summary, f"replay of {trace}")


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    """A Rich progress display on a terminal's stderr; nothing when ``quiet`` or piped."""
    import sys as _sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if quiet or not _sys.stderr.isatty():
        return _NullProgress()
    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


# Until the first requests are counted the engine is being compiled (first run on a
# machine, tens of seconds, announced on stderr) or loaded from the cache (a second).
PREPARING = "compiling or loading the engine"


class _Advance:
    """A progress callback for a bar's task: PREPARING, or the stage the replay names,
    until the first requests; then the label and the count."""

    def __init__(self, bar: Any, label: str, total: int | None) -> None:
        self.bar, self.label = bar, label
        self.task = bar.add_task(f"{label}: {PREPARING}", total=total)
        self.started = False

    def stage(self, text: str) -> None:
        if not self.started:
            self.bar.update(self.task, description=f"{self.label}: {text}")

    def __call__(self, n: int) -> None:
        if not self.started:
            self.started = True
            self.bar.update(self.task, description=self.label)
        self.bar.advance(self.task, n)


def _advancer(bar: Any, label: str, total: int | None) -> Callable[[int], None] | None:
    """A progress callback for ``bar`` (None without one)."""
    return None if bar is None else _Advance(bar, label, total)


class _NullProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def _say_fault_log(summary: dict, more: str) -> None:  # type: ignore[type-arg]
    """One line on stderr when the written fault sequence holds only the first faults."""
    kept, faults = summary.get("fault_log"), summary.get("faults")
    if kept is not None and faults is not None and faults > kept:
        click.echo(f"faults.parquet holds the first {kept:,} of {faults:,} faults ({more})",
                   err=True)


def _print_summary(summary: dict, title: str) -> None:  # type: ignore[type-arg]
    """The title on a line of its own (a table's title wraps to the table's width), then a
    measure per line, with its unit and thousands separators."""
    console.print(title, style="bold", highlight=False)
    rows = [[key, _value(key, value)] for key, value in summary.items()]
    console.print(_table("", ["measure", "value"], rows, left=(0,)))


@app.command()
@click.argument("source", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("target", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--from", "from_fmt", type=click.Choice(["oracleGeneral", "lcs", "csv", "npy"]),
              help="IN's format [default: what its name and first bytes say].")
@click.option("--to", "to_fmt", type=click.Choice(["oracleGeneral", "lcs", "csv", "npy"]),
              help="OUT's format [default: from OUT's name, e.g. t.lcs.zst].")
@click.option("--columns", help="CSV column map of IN, e.g. obj=2,tenant=3 (1-based or names).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def convert(source: str, target: str, from_fmt: str | None, to_fmt: str | None,
            columns: str | None, as_json: bool) -> None:
    """Convert a trace between oracleGeneral, lcs, csv and npy; OUT is compressed when its
    name ends in .zst or .gz."""
    import os

    from epcsim.workload.convert import ConvertError, convert_trace

    cols = parse_columns(columns)
    with _progress(as_json) as bar:
        task = bar.add_task("read", total=None) if bar else None

        def step(stage: str, done: int, total: int | None) -> None:
            if bar:
                bar.update(task, description=stage, completed=done, total=total)

        try:
            doc = convert_trace(source, target, from_fmt, to_fmt, columns=cols,
                                progress=step)
        except ConvertError as e:
            raise UsageError(str(e)) from None
        except OSError as e:
            raise UsageError(f"cannot write: {e.strerror} ({target})") from None
    doc["bytes"] = os.path.getsize(target)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    _print_summary(doc, f"convert {source}")


@app.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write summary.json, resolved scenario and Parquet metrics here.")
def run(scenario: str, as_json: bool, out_dir: str | None) -> None:
    """Run a SCENARIO.toml: platform, kernel, enclaves with workloads."""
    from pathlib import Path

    from epcsim.sim.replay import ReplayError
    from epcsim.sim.runner import run_scenario, total_requests, write_run
    from epcsim.workload.scenario import ScenarioError, check_files, load
    from epcsim.workload.traces import TraceError

    if out_dir is not None:
        _check_out(out_dir)
    try:
        sc = load(scenario)
        check_files(sc, Path(scenario).resolve().parent, scenario)
        with announced("demo"), _progress(as_json) as bar:
            out = run_scenario(sc, Path(scenario).resolve().parent, scenario_name=scenario,
                               progress=_advancer(bar, "run", total_requests(sc)))
    except (ScenarioError, TraceError) as e:
        raise UsageError(str(e)) from None
    except (ReplayError, ValueError) as e:
        raise UsageError(f"{e} ({scenario})") from None
    if out_dir is not None:
        from epcsim.sim.runner import with_absolute_traces

        try:
            write_run(out_dir, out, with_absolute_traces(sc, Path(scenario).resolve().parent))
        except ValueError as e:
            raise UsageError(str(e)) from None
        except OSError as e:
            raise UsageError(f"cannot write results: {e.strerror} ({out_dir})") from None
        _say_fault_log(out.summary, "[run] fault_log = N keeps more")
    if as_json:
        click.echo(json.dumps(out.summary, indent=2))
        return
    _print_summary({k: v for k, v in out.summary.items() if not isinstance(v, list)},
                   f"run of {scenario}")
    if "pods" in out.summary:
        _print_pods(out.summary["pods"], out.summary.get("per_node"))
        return
    _print_rows("per enclave", out.summary.get("per_enclave") or [],
                ("name", "pages", "requests", "faults", "miss_ratio"))
    _print_rows("per VM", out.summary.get("vms") or [], VM_COLUMNS)


@app.command()
@click.argument("manifests", metavar="MANIFEST.yaml...", nargs=-1, required=True,
                type=click.Path(dir_okay=False))
@click.option("--node-epc", required=True, help="EPC of each node, e.g. 64MiB or 1Gi.")
@click.option("--nodes", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
              help="Nodes to pack the pods onto.")
@click.option("--platform", "platform_name", default="client-sgx1", show_default=True,
              help="Cost model: client-sgx1, server-sgx1, xeon-icx.")
@click.option("--requests", type=click.IntRange(min=1), default=400_000, show_default=True,
              help="Accesses replayed, shared by the pods by weight.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--default-workload", default="zipf", show_default=True,
              help="Workload of a pod without the epcsim.io/workload annotation.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write summary.json, the scenario and Parquet tables here.")
def plan(manifests: tuple[str, ...], node_epc: str, nodes: int, platform_name: str,
         requests: int, seed: int, default_workload: str, as_json: bool,
         out_dir: str | None) -> None:
    """Plan Kubernetes pods asking for sgx.intel.com/epc onto nodes (docs/cgroups.md)."""
    from pathlib import Path

    from epcsim.api import run as run_api
    from epcsim.sim.replay import ReplayError
    from epcsim.workload.k8s import ManifestError, parse_quantity, read_manifests
    from epcsim.workload.scenario import ScenarioError

    try:
        epc = parse_quantity(node_epc)
    except ValueError:
        try:
            epc = parse_size(node_epc)
        except UsageError:
            raise UsageError(f"--node-epc: not a size: {node_epc!r} (e.g. 64MiB, 1Gi)") \
                from None
    try:
        found = read_manifests(list(manifests), default_workload)
    except ManifestError as e:
        raise UsageError(str(e)) from None
    scenario = {"platform": {"preset": platform_name},
                "cluster": {"node_epc": epc, "nodes": nodes},
                "run": {"requests": requests, "seed": seed}, "pods": found.pods}
    try:
        total = requests
        with announced("demo"), _progress(as_json) as bar:
            res = run_api(scenario, progress=_advancer(bar, "plan", total))
    except ScenarioError as e:
        import re

        # The scenario is made here: name the pod and its manifest, not an index into it.
        text = str(e).removesuffix(" (scenario)")
        m = re.match(r"pods\[(\d+)\]\.?(\S*): (.*)", text)
        if m:
            pod = found.pods[int(m.group(1))]
            text = f"pod {pod['name']}: {m.group(2) + ': ' if m.group(2) else ''}{m.group(3)}"
            raise UsageError(f"{text} ({found.origin[pod['name']]})") from None
        raise UsageError(f"{text} ({', '.join(manifests)})") from None
    except (ReplayError, ValueError) as e:
        raise UsageError(f"{e} ({', '.join(manifests)})") from None
    res.summary["scenario"] = " ".join(manifests)
    res.summary["manifests"] = list(manifests)
    res.summary["skipped"] = found.skipped
    if out_dir:
        try:
            res.save(Path(out_dir))
        except OSError as e:
            raise UsageError(f"cannot write results: {e.strerror} ({out_dir})") from None
    if as_json:
        click.echo(json.dumps(res.summary, indent=2))
        return
    _print_pods(res.summary["pods"], res.summary.get("per_node"))
    if found.skipped:
        console.print(f"skipped: {', '.join(found.skipped)}", highlight=False)


@app.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def host(as_json: bool) -> None:
    """What this machine has for SGX: CPU flags, EPC per NUMA node, the misc cgroup's
    sgx_epc; one line when it has none."""
    from epcsim.host import one_line, read_host

    info = read_host()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if not info["sgx"]:
        click.echo(one_line(info))
        return
    rows = [["CPU flags", f"sgx{' sgx_lc' if info['sgx_lc'] else ''} (/proc/cpuinfo)"],
            ["devices", ", ".join(f"/dev/{d}" for d, there in info["devices"].items()
                                  if there) or "none"]]
    if "epc_bytes" in info:
        rows.append(["EPC", mib(info["epc_bytes"])])
    for n in info.get("epc_per_node", []):
        rows.append([f"EPC on node {n['node']}", mib(n["sgx_total_bytes"])])
    for sec in info.get("epc_sections", []):
        rows.append([f"section {sec['section']}",
                     f"{mib(sec['size'])} at {sec['base']:#x} (CPUID 0x12)"])
    misc = info.get("misc_sgx_epc", {})
    for key in ("capacity", "current", "max", "peak"):
        if key in misc:
            where = "root" if key == "capacity" else misc.get("cgroup", "/")
            rows.append([f"misc {key} ({where})", mib(misc[key])])
    table = Table(title="SGX on this machine", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for r in rows:
        table.add_row(*r)
    console.print(table)


@app.command(name="validate")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def validate_cmd(file: str, as_json: bool) -> None:
    """Check a scenario (or a sweep) FILE without running it: every error, one line each
    naming the key; exit status 2 if there is any."""
    from epcsim.sweep.spec import SweepError, load_sweep
    from epcsim.workload.scenario import ScenarioError, problems, read

    try:
        data = read(file)
    except ScenarioError as e:
        raise UsageError(str(e)) from None
    kind = "sweep" if {"sweep", "grid"} & set(data) else "scenario"
    if kind == "sweep":
        try:
            load_sweep(file)
            found: list[str] = []
        except SweepError as e:
            found = [str(e).removesuffix(f" ({file})")]
    else:
        found = problems(data)
    if as_json:
        click.echo(json.dumps({"file": file, "kind": kind, "valid": not found,
                               "errors": found}, indent=2))
    elif not found:
        click.echo(f"{file}: a valid {kind}")
    for line in found if not as_json else []:
        click.echo(f"epcsim: error: {line} ({file})", err=True)
    if found:
        raise click.exceptions.Exit(2)


@app.command()
@click.option("--sweep", is_flag=True, help="The schema of a sweep file instead.")
def schema(sweep: bool) -> None:
    """Print the JSON Schema of a scenario (or of a sweep file), for editors."""
    from epcsim.sweep.spec import SweepFile
    from epcsim.workload.scenario import Scenario

    model = SweepFile if sweep else Scenario
    click.echo(json.dumps(model.model_json_schema(), indent=2))


@app.command()
@click.argument("sweep_file", metavar="SWEEP.toml", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Where points and sweep.parquet go [default: SWEEP.results beside it]. "
              "Run again to resume: finished points are kept.")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
              help="Local worker processes.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run the points on a Dask distributed cluster (tcp://host:8786).")
@click.option("--plot", "metric", help="Then draw this summary value ...")
@click.option("--x", "x_param", help="... against this grid parameter (dotted key).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep(sweep_file: str, out_dir: str | None, workers: int, scheduler: str | None,
          metric: str | None, x_param: str | None, as_json: bool) -> None:
    """Run a scenario over a grid of parameters; one row per point in sweep.parquet."""
    from pathlib import Path

    from epcsim.provenance import version
    from epcsim.sweep.execute import SweepRunError, run_sweep
    from epcsim.sweep.spec import SweepError, load_sweep

    if (metric is None) != (x_param is None):
        raise UsageError("--plot METRIC and --x PARAM go together")
    if metric is not None:
        _need_plots("epcsim sweep --plot")
    try:
        spec = load_sweep(sweep_file)
    except SweepError as e:
        raise UsageError(str(e)) from None
    if out_dir is not None and not out_dir.strip():
        raise UsageError("--out: an empty path")
    out = Path(out_dir) if out_dir else spec.path.with_suffix(".results")
    from epcsim.files import InputError
    from epcsim.sweep.execute import check_sweep_out

    try:
        check_sweep_out(out)
    except InputError as e:
        raise UsageError(str(e)) from None
    if x_param and x_param.removeprefix("param.") not in spec.grid:
        raise UsageError(f"--x {x_param[:80]!r} is not a grid parameter (have: "
                         f"{', '.join(spec.grid)})")
    total = len(spec.points())
    try:
        with announced("demo"), _progress(as_json) as bar:
            task = bar.add_task("sweep", total=total) if bar else None
            outcome = run_sweep(spec, out, workers=workers, scheduler=scheduler,
                                progress=(lambda d, t: bar.update(task, completed=d))
                                if bar else None)
    except (SweepRunError, InputError) as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write results: {e.strerror} ({out})") from None
    doc = {"points": total, "computed": outcome.computed, "reused": outcome.reused,
           "recomputed_other_version": outcome.outdated, "table": str(outcome.table_path)}
    if outcome.outdated:
        made = ", ".join(f"{n} by {v}" for v, n in sorted((outcome.versions or {}).items()))
        click.echo(f"epcsim: {outcome.outdated} point{'s' if outcome.outdated > 1 else ''} "
                   f"made by another epcsim version ({made}) computed again with "
                   f"{version()}", err=True)
    if metric and x_param:
        from epcsim.files import write_index
        from epcsim.sweep.plot import PlotError, plot_metric

        try:
            files = plot_metric(outcome.table_path, metric, x_param,
                                out / f"{metric}-vs-{x_param}")
        except PlotError as e:
            raise UsageError(f"{e} ({outcome.table_path})") from None
        write_index(out, "sweep")
        doc["plots"] = [str(f) for f in files]
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    _print_summary(doc, f"sweep {sweep_file}")


@app.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the workloads.")
def workloads(as_json: bool) -> None:
    """The workloads a scenario or 'epcsim trace' can run, with their parameters."""
    from epcsim.workload.catalog import catalog

    items = catalog()
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    from rich.markup import escape

    common = ("accesses", "tlb")
    table = Table(title=escape("workloads: [[enclaves]] workload = NAME, "
                               "params = { KEY = VALUE }; epcsim trace NAME --param KEY=VALUE"),
                  caption="every program also takes " + ", ".join(
                      f"{p['name']}={p['default']}" for p in items[0]["params"]
                      if p["name"] in common) + " ('epcsim workloads --json' describes all)")
    table.add_column("name", style="bold")
    table.add_column("kind")
    table.add_column("what it runs")
    table.add_column("parameters: default [range]")

    def bound(p: dict, v: float) -> str:  # type: ignore[type-arg]
        return str(int(v)) if p["type"] == "int" else f"{v:g}"

    for w in items:
        shown = [p for p in w["params"] if w["kind"] != "program" or p["name"] not in common]
        table.add_row(w["name"], w["kind"], w["summary"], escape("\n".join(
            f"{p['name']}={p['default']} [{bound(p, p['min'])}..{bound(p, p['max'])}]"
            for p in shown)))
    console.print(table)


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    """``--param KEY=VALUE`` options as a dict; a bad one is a one-line error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--param: KEY=VALUE, like --param alpha=0.9 (got {item!r})")
        out[key.strip()] = value.strip()
    return out


@app.command()
@click.argument("workload")
@click.option("--size", required=True, help="Bytes the workload's data take, e.g. 64MiB.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the workload's randomness.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A workload parameter (repeatable; 'epcsim workloads' lists them).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="The trace file to write.")
@click.option("--format", "fmt", type=click.Choice(["oracleGeneral", "lcs", "csv", "npy"]),
              help="Trace format [default: from the file's suffix].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def trace(workload: str, size: str, seed: int, params: tuple[str, ...], out_file: str,
          fmt: str | None, as_json: bool) -> None:
    """Run WORKLOAD and write the page accesses it makes as a trace."""
    import numpy as np

    from epcsim.workload.catalog import format_for, make_trace, write_trace
    from epcsim.workload.programs import ProgramError

    nbytes = parse_size(size)
    try:
        form = format_for(out_file, fmt)
        with announced("programs"):
            page, write, thread, info = make_trace(workload, nbytes, seed,
                                                   parse_params(params))
        write_trace(out_file, form, page, write, thread)
    except ProgramError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write the trace: {e.strerror} ({out_file})") from None
    doc = {"workload": workload, "size": nbytes, "seed": seed, "out": out_file,
           "format": form, "records": len(page), "writes": int(write.sum()),
           "pages": int(np.unique(page).size) if len(page) else 0,
           "threads": int(thread.max()) + 1 if len(thread) else 0, **info}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    _print_summary({k: v for k, v in doc.items() if not isinstance(v, list)},
                   f"trace of {workload}")


@app.command(name="compile")
@click.option("--all", "everything", is_flag=True,
              help="Everything epcsim compiles (cgroups, content mode, the selftests too), "
              "not only what the demo and the replay need.")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=None,
              help="Processes compiling side by side [default: one per core].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compile_cmd(everything: bool, workers: int | None, as_json: bool) -> None:
    """Compile ahead what the commands compile on a first run, into the cache."""
    import os

    from epcsim.compiling import UNITS, compile_units, estimate
    from epcsim.jitcache import cache_dir

    names = [u.name for u in UNITS.values() if everything or u.default]
    n = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    with _progress(as_json) as bar:
        tasks = {name: bar.add_task(f"compile {name}", total=1) for name in names} \
            if bar else {}
        if not bar and not as_json:
            click.echo(f"compiling {', '.join(names)} in {min(n, len(names))} processes, "
                       f"about {max(estimate(x) for x in names):.0f} s", err=True)

        def done(name: str, _seconds: float) -> None:
            if bar:
                bar.update(tasks[name], completed=1)

        times = compile_units(names, n, done)
    doc = {"units": {k: round(v, 1) for k, v in times.items()},
           "seconds": round(time.perf_counter() - t0, 1), "workers": min(n, len(names)),
           "cache": str(cache_dir())}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    _print_summary({**{f"{k} (s)": v for k, v in doc["units"].items()},
                    "wall (s)": doc["seconds"], "processes": doc["workers"],
                    "cache": doc["cache"]}, "compiled")


@app.command()
@click.argument("results_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Where the plots and report.html go [default: DIR/report].")
@click.option("--json", "as_json", is_flag=True, help="Print the files written as JSON.")
def report(results_dir: str, out_dir: str | None, as_json: bool) -> None:
    """Plots (PNG, SVG) and a self-contained report.html from a results DIR."""
    from epcsim.report.results import ResultsError
    from epcsim.report.write import write_report

    _need_plots("epcsim report")
    try:
        files = write_report(results_dir, out_dir)
    except ResultsError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write the report: {e.strerror} ({out_dir or results_dir})") \
            from None
    if as_json:
        click.echo(json.dumps({"files": [str(f) for f in files]}, indent=2))
        return
    for f in files:
        click.echo(str(f))


def mib(value: object) -> str:
    """Bytes as MiB (GiB from 10 GiB) with thousands separators; ``max`` stays."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if value >= 10 << 30:
        return f"{value / (1 << 30):,.1f} GiB"
    return f"{value / (1 << 20):,.1f} MiB"


def _status(text: str) -> str:
    """The status column's word; the reason goes under the table."""
    return text.split(":", 1)[0]


def _mib_cell(value: object) -> str:
    """A size cell of a table headed "MiB": the number alone, three digits under 1 MiB."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 1 << 20:
        return f"{value / (1 << 20):.3g}"
    return mib(value).removesuffix(" MiB")


def _table(title: str, heads: list[str], rows: list[list[str]],
           left: tuple[int, ...] = ()) -> Table:
    """A table that fits 80 columns: headers on two short lines, cells never wrapped, the
    ``left`` columns (names, words) left-aligned; every column as wide as its longest cell."""
    from rich import box

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, head in enumerate(heads):
        width = max([len(r[i]) for r in rows] + [len(x) for x in head.split("\n")])
        table.add_column(head, justify="left" if i in left else "right", no_wrap=True,
                         min_width=min(width, 24))
    for r in rows:
        table.add_row(*r)
    return table


def _print_pods(pods: list[dict], nodes: list[dict] | None = None) -> None:  # type: ignore[type-arg]
    """Pods (and nodes) as tables that fit 80 columns: sizes in MiB, a failure's reason
    printed under the table, not inside a cell."""
    rows = [[str(p["name"]), "-" if p["node"] < 0 else str(p["node"]), _status(p["status"]),
             _mib_cell(p["epc_request"]), _mib_cell(p["epc_limit"]), _mib_cell(p["peak"]),
             f"{p['limit_hits']:,}", f"{p['paging_cost_s']:,.3f}", f"{p['slowdown']:,.2f}×"]
            for p in pods]
    console.print(_table("per pod", ["pod", "node", "status", "request\nMiB", "limit\nMiB",
                                     "peak\nMiB", "limit\nhits", "paging\ns",
                                     "slowdown"], rows, left=(0, 2)))
    for p in pods:
        if p["status"] != "ok":
            console.print(f"{p['name']}: {p['status']}", highlight=False)
    if not nodes:
        return
    rows = [[str(n["node"]), str(n["pods"]), _mib_cell(n["epc_request"]),
             _mib_cell(n["epc_limit"]), _mib_cell(n["peak"]), f"{n['limit_hits']:,}",
             f"{n['paging_cost_s']:,.3f}", f"{n['slowdown']:,.2f}×", str(n["failures"])]
            for n in nodes]
    console.print(_table("per node", ["node", "pods", "request\nMiB", "limit\nMiB",
                                      "peak\nMiB", "limit\nhits", "paging\ns",
                                      "worst\nslowdown", "failures"], rows))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors become one line and status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"] or ["--help"]
    try:
        # Without standalone mode Click returns, not raises, the status of an Exit.
        rc = app.main(args, prog_name="epcsim", standalone_mode=False)
        if isinstance(rc, int) and rc:
            return rc
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.Abort, KeyboardInterrupt):
        # Click turns Ctrl-C into Abort (no command prompts). Whatever was being written was
        # removed on the way out (epcsim.files.staged); 130 is a shell's status for SIGINT.
        print("epcsim: interrupted", file=sys.stderr)
        return 130
    except click.ClickException as e:
        if debug:
            raise
        # Click lays some messages out over lines (the choices of a missing option).
        print(f"epcsim: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
