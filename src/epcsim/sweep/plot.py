"""``epcsim sweep --plot METRIC --x PARAM``: a metric against a parameter, one line per
combination of the other parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


class PlotError(ValueError):
    """A metric or parameter the sweep table does not have."""


def _as_number(value: Any) -> float | None:
    from epcsim.workload.scenario import parse_size

    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(parse_size(str(value)))
    except ValueError:
        return None


def plot_metric(table_path: Path, metric: str, x: str, out_stem: Path) -> list[Path]:
    """Write ``out_stem``.png and .svg; returns the paths."""
    from epcsim.report.plots import pyplot

    plt = pyplot("--plot")
    rows = pq.read_table(table_path).to_pylist()
    params = [c for c in (rows[0] if rows else {}) if c.startswith("param.")]
    xcol = x if x.startswith("param.") else f"param.{x}"
    if xcol not in params:
        raise PlotError(f"--x {x!r} is not a grid parameter (have: "
                        f"{', '.join(p.removeprefix('param.') for p in params)})")
    if not rows or metric not in rows[0] or metric.startswith("param."):
        metrics = sorted(k for k in rows[0] if not k.startswith("param.")) if rows else []
        raise PlotError(f"--plot {metric!r} is not a summary value of the sweep "
                        f"(e.g. {', '.join(m for m in metrics if 'ratio' in m or 'slow' in m)})")
    others = [p for p in params if p != xcol]
    numeric = all(_as_number(r[xcol]) is not None for r in rows)
    lines: dict[tuple[Any, ...], list[tuple[Any, Any, Any]]] = {}
    for r in rows:
        key = tuple(r[o] for o in others)
        xv = _as_number(r[xcol]) if numeric else str(r[xcol])
        lines.setdefault(key, []).append((xv, r[metric], r[xcol]))
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for key, pts in lines.items():
        if numeric:
            pts.sort(key=lambda t: t[0])
        label = ", ".join(f"{o.removeprefix('param.')}={v}" for o, v in zip(others, key,
                                                                                strict=True))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label or None)
    if numeric:
        first = next(iter(lines.values()))
        ax.set_xticks([p[0] for p in first], [str(p[2]) for p in first])
    ax.set_xlabel(xcol.removeprefix("param."))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {xcol.removeprefix('param.')}")
    ax.grid(alpha=0.3)
    if others:
        # Beside the axes, never over a line.
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, frameon=False)
    out = []
    for ext in ("png", "svg"):
        path = out_stem.parent / f"{out_stem.name}.{ext}"
        fig.savefig(path, dpi=120)
        out.append(path)
    plt.close(fig)
    return out
