"""The report's figures, each drawn from result tables alone.

Every function takes :class:`Results` and returns a :class:`Figure` (a title, a caption
saying what is drawn and from which table, and the matplotlib figure) or ``None`` when the
results hold no data for it, so one report covers runs with and without VMs, cgroups, a
miss-ratio curve or a sweep.

Per-owner tables from other parts of a run follow one convention: ``<kind>_series`` (e.g.
``cgroup_series``, ``vm_series``) with ``time_s``, a name column (``name``, ``cgroup``,
``vm`` or ``owner``) and the pages in use (``pages``, ``current_pages``, ``usage_pages`` or
``host_pages``);
cgroup tables may add their limit (``max_pages`` or ``limit_pages``: misc.max in pages).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from epcsim.report.results import Results

NAME_COLUMNS = ("name", "cgroup", "vm", "owner")
USAGE_COLUMNS = ("pages", "current_pages", "usage_pages", "host_pages")
LIMIT_COLUMNS = ("max_pages", "limit_pages")
RATE_WINDOWS = 200


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    fig: Any


class PlotsMissing(ImportError):
    """matplotlib, the ``plots`` extra, is not installed."""


def require_plots(what: str) -> None:
    """Raise :class:`PlotsMissing`, saying how to install it, unless matplotlib imports:
    commands that draw call it before their other work, so that none is lost."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotsMissing(
            f"{what} draws figures with matplotlib, which comes with epcsim's 'plots' extra: "
            "python3 -m pip install 'epcsim[plots]' (from a checkout: '.[plots]')") from None


def pyplot(what: str = "the report") -> Any:
    """matplotlib's pyplot on its file backend (:func:`require_plots` first)."""
    require_plots(what)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def _legend(ax: Any) -> None:
    """The legend beside the axes, right of the data, never over a line (constrained
    layout makes room for it)."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0, frameon=False)


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _first(table: pa.Table, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in table.column_names), None)


def _owner_series(res: Results) -> dict[str, pa.Table]:
    out = {}
    for name, t in res.tables.items():
        if (name.endswith("_series") and name != "cgroup_series" and "time_s" in t.column_names
                and _first(t, NAME_COLUMNS) and _first(t, USAGE_COLUMNS)):
            out[name.removesuffix("_series")] = t
    return out


def epc_usage(res: Results) -> Figure | None:
    series = res.tables.get("series")
    if series is None or series.num_rows == 0:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    t = _col(series, "time_s") * 1e3
    ax.plot(t, _col(series, "free_pages"), label="free EPC (sgx_nr_free_pages)", color="k")
    epc = res.summary.get("epc_pages")
    if epc:
        ax.axhline(epc, ls="--", color="grey", lw=0.8, label=f"EPC size ({epc} pages)")
    owners = _owner_series(res)
    for kind, table in owners.items():
        who, usage = _first(table, NAME_COLUMNS), _first(table, USAGE_COLUMNS)
        names = _col(table, who).astype(str)
        for n in np.unique(names):
            m = names == n
            ax.plot(_col(table, "time_s")[m] * 1e3, _col(table, usage)[m],
                    label=f"{kind} {n}")
    ax.set_xlabel("virtual time (ms)")
    ax.set_ylabel("EPC pages")
    ax.set_title("Free EPC" + (" and per-owner usage" if owners else "") + " over time")
    ax.grid(alpha=0.3)
    _legend(ax)
    caption = ("Free EPC pages sampled at fixed virtual-time steps (series.parquet)"
               + (f"; per-owner pages from {', '.join(k + '_series' for k in owners)}."
                  if owners else "."))
    return Figure("epc_usage", "EPC usage over time", caption, fig)


def paging_rate(res: Results) -> Figure | None:
    series = res.tables.get("series")
    if series is None or series.num_rows == 0:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    t = np.concatenate([[0.0], _col(series, "time_s")])
    # Rates over at most RATE_WINDOWS equal windows of the run: between single samples,
    # work that comes in bursts (a VM's ECALLs between parts of the trace) hides the trend.
    edges = np.unique(np.linspace(0, len(t) - 1, min(RATE_WINDOWS, len(t) - 1) + 1)
                      .round().astype(int))
    dt = np.diff(t[edges])
    dt[dt == 0] = np.nan
    for col, label in (("faults", "page faults / s"), ("ewb", "EWB / s")):
        cum = np.concatenate([[0], _col(series, col)])
        ax.plot(t[edges[1:]] * 1e3, np.diff(cum[edges]) / dt, label=label)
    ax.set_xlabel("virtual time (ms)")
    ax.set_ylabel("per second of virtual time")
    ax.set_title("Faults and EWB per second")
    ax.grid(alpha=0.3)
    _legend(ax)
    return Figure("paging_rate", "Faults and EWB per second",
                  f"Rates over up to {RATE_WINDOWS} equal windows of series.parquet's "
                  "samples (virtual time).", fig)


def cgroup_usage(res: Results) -> Figure | None:
    table = res.tables.get("cgroup_series")
    if table is None or table.num_rows == 0:
        return None
    who, usage = _first(table, NAME_COLUMNS), _first(table, USAGE_COLUMNS)
    if who is None or usage is None or "time_s" not in table.column_names:
        return None
    limit = _first(table, LIMIT_COLUMNS)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    names = _col(table, who).astype(str)
    t = _col(table, "time_s") * 1e3
    for i, n in enumerate(np.unique(names)):
        m = names == n
        color = f"C{i % 10}"
        ax.plot(t[m], _col(table, usage)[m], color=color, label=f"{n} misc.current")
        if limit:
            lim = _col(table, limit)[m].astype(float)
            if np.isfinite(lim).any():
                ax.plot(t[m], lim, color=color, ls="--", label=f"{n} misc.max")
    ax.set_xlabel("virtual time (ms)")
    ax.set_ylabel("EPC pages")
    ax.set_title("Per-cgroup sgx_epc usage against its limit")
    ax.grid(alpha=0.3)
    _legend(ax)
    return Figure("cgroup_usage", "Per-cgroup usage against its limit",
                  "misc.current (solid) and misc.max (dashed) per cgroup (cgroup_series).", fig)


def fault_heatmap(res: Results) -> Figure | None:
    faults = res.tables.get("faults")
    if faults is None or faults.num_rows == 0:
        return None
    t = _col(faults, "time_s") * 1e3
    tenant = _col(faults, "tenant").astype(np.int64)
    page = _col(faults, "page").astype(np.int64)
    # Stack the enclaves' pages one above the other, in tenant order.
    span = np.zeros(int(tenant.max()) + 1, np.int64)
    np.maximum.at(span, tenant, page + 1)
    offset = np.concatenate(([0], np.cumsum(span)[:-1]))
    y = offset[tenant] + page
    plt = pyplot()
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    bins = (min(200, max(10, len(np.unique(t)))), min(200, max(10, int(span.sum()))))
    h, xe, ye = np.histogram2d(t, y, bins=bins)
    im = ax.pcolormesh(xe, ye, h.T, norm=LogNorm(vmin=1, vmax=max(1.0, h.max())),
                       cmap="viridis", shading="flat")
    fig.colorbar(im, ax=ax, label="faults per cell")
    names = _enclave_names(res)
    for i, off in enumerate(offset):
        if i:
            ax.axhline(off, color="w", lw=0.6)
        ax.text(xe[0], off + span[i] / 2, f" {names.get(i, f'tenant {i}')}", color="w",
                va="center", fontsize="small")
    ax.set_xlabel("virtual time (ms)")
    ax.set_ylabel("enclave page (stacked by enclave)")
    ax.set_title("Page faults: page against time")
    capped = "" if faults.num_rows >= res.summary.get("faults", 0) else (
        f" The log holds the first {faults.num_rows} of {res.summary.get('faults')} faults.")
    return Figure("fault_heatmap", "Page-fault heatmap",
                  "The OS-visible fault sequence (faults.parquet) binned by virtual time and "
                  "page: what a malicious OS observes." + capped, fig)


def _enclave_names(res: Results) -> dict[int, str]:
    enc = res.tables.get("enclaves")
    if enc is None or "name" not in enc.column_names:
        return {}
    return {int(r["tenant"]): str(r["name"]) for r in enc.select(["tenant", "name"]).to_pylist()}


def miss_ratio_curve(res: Results) -> Figure | None:
    mrc = res.tables.get("mrc")
    if mrc is None or mrc.num_rows == 0:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    owner = _col(mrc, "owner").astype(str)
    for name in ["all"] + sorted(set(owner) - {"all"}):
        m = owner == name
        ax.plot(_col(mrc, "epc_pages")[m], _col(mrc, "miss_ratio")[m],
                lw=2.2 if name == "all" else 1.2,
                label="all enclaves, one LRU" if name == "all" else f"{name} alone")
    epc, mr = res.summary.get("epc_pages"), res.summary.get("miss_ratio")
    if epc and mr is not None:
        ax.plot([epc], [mr], "r*", ms=13,
                label=f"this run ({res.summary.get('policy')}): {mr:.3f} at {epc} pages")
        ax.axvline(epc, color="r", lw=0.6, ls=":")
    ax.set_xlabel("EPC size (pages)")
    ax.set_ylabel("miss ratio")
    ax.set_ylim(bottom=0)
    ax.set_title("Miss-ratio curves across EPC sizes")
    ax.grid(alpha=0.3)
    _legend(ax)
    return Figure("miss_ratio_curve", "Miss-ratio curves across EPC sizes",
                  "Exact LRU miss ratio at every EPC size from stack distances (mrc.parquet); "
                  "the star is the run's own policy at its EPC size.", fig)


def _sweep_lines(sweep: pa.Table, x: str, y: str) -> dict[str, list[tuple[float, float]]]:
    rows = sweep.to_pylist()
    params = [c for c in sweep.column_names if c.startswith("param.")]
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.get(x) is None or r.get(y) is None:
            continue
        varying = [p for p in params if len({q[p] for q in rows}) > 1
                   and not _moves_with(rows, p, x)]
        label = ", ".join(f"{p.removeprefix('param.')}={r[p]}" for p in varying)
        lines.setdefault(label, []).append((float(r[x]), float(r[y])))
    return {k: sorted(v) for k, v in lines.items()}


def _moves_with(rows: list[dict[str, Any]], param: str, x: str) -> bool:
    """True when ``param`` decides ``x`` (e.g. platform.epc_size decides epc_pages)."""
    seen: dict[Any, Any] = {}
    for r in rows:
        if seen.setdefault(r[param], r[x]) != r[x]:
            return False
    return len(set(seen.values())) > 1


def _sweep_figure(res: Results, name: str, title: str, x: str, y: str, xlabel: str,
                  caption: str) -> Figure | None:
    sweep = res.sweep
    if sweep is None or x not in sweep.column_names or y not in sweep.column_names:
        return None
    if len(set(_col(sweep, x).tolist())) < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for label, pts in _sweep_lines(sweep, x, y).items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label or None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        _legend(ax)
    return Figure(name, title, caption, fig)


def sweep_miss_ratio(res: Results) -> Figure | None:
    return _sweep_figure(res, "sweep_miss_ratio", "Miss ratio across EPC sizes (sweep)",
                         "epc_pages", "miss_ratio", "EPC size (pages)",
                         "One point per sweep run with the run's own policy (sweep.parquet).")


def slowdown_vs_working_set(res: Results) -> Figure | None:
    return _sweep_figure(res, "slowdown_working_set", "Slowdown against working set",
                         "footprint_pages", "slowdown", "working set: pages touched",
                         "Virtual time over time without paging, one point per sweep run "
                         "(sweep.parquet); the x axis is the pages the run touched.")


ALL: tuple[Callable[[Results], Figure | None], ...] = (
    epc_usage, paging_rate, cgroup_usage, fault_heatmap, miss_ratio_curve, sweep_miss_ratio,
    slowdown_vs_working_set)


def figures(res: Results) -> list[Figure]:
    """Every figure the results hold data for, in report order.

    epcsim writes every table and summary value these read; a file edited (or written by
    something else) to hold other columns or types is refused, naming the figure, rather
    than drawn wrong.
    """
    from epcsim.report.results import ResultsError

    out = []
    for draw in ALL:
        try:
            f = draw(res)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                pa.ArrowException) as e:
            pyplot().close("all")
            why = " ".join(str(e).split())[:120] or type(e).__name__
            raise ResultsError(f"cannot draw {draw.__name__}: the results do not hold what "
                               f"epcsim writes ({why}) ({res.path})") from None
        if f is not None:
            out.append(f)
    return out
