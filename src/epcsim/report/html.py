"""One self-contained HTML page: the summary table and every figure, images inlined."""

from __future__ import annotations

import base64
import html
from typing import Any

from epcsim.provenance import DIGEST_KEY, VERSION_KEY, table_stamp, version
from epcsim.report.results import Results

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222;
       background: #fff; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
footer { margin-top: 3em; color: #555; font-size: 0.85em; border-top: 1px solid #ccc; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


def _table(rows: list[dict[str, Any]], title: str) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="{"num" if isinstance(r.get(c), (int, float)) else ""}">'
            f"{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>"
        for r in rows)
    return f"<h2>{html.escape(title)}</h2>\n<table><tr>{head}</tr>{body}</table>\n"


def page(res: Results, images: list[tuple[str, str, bytes]], title: str) -> str:
    """``images``: (title, caption, PNG bytes) in order."""
    parts = [(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"),
             f"<h1>{html.escape(title)}</h1>"]
    scalars = [{"measure": k, "value": v} for k, v in res.summary.items()
               if not isinstance(v, list)]
    parts.append(_table(scalars, "Summary"))
    for key, value in res.summary.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            parts.append(_table(value, key.replace("_", " ")))
    if res.sweep is not None:
        keep = [c for c in res.sweep.column_names if c == "point" or c.startswith("param.")
                or c in ("miss_ratio", "slowdown", "faults", "ewb", "footprint_pages",
                         "epc_pages", "error")]
        parts.append(_table(res.sweep.select(keep).to_pylist(), "Sweep"))
    for fig_title, caption, png in images:
        data = base64.b64encode(png).decode()
        parts.append(f"<h2>{html.escape(fig_title)}</h2><figure>"
                     f'<img alt="{html.escape(fig_title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append(footer(res))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def footer(res: Results) -> str:
    """Where the results came from: the epcsim that made them and their scenario's digest
    (from summary.json, else a sweep table's metadata), and the epcsim drawing the report."""
    stamp = {k: res.summary[k] for k in (VERSION_KEY, DIGEST_KEY) if k in res.summary}
    if not stamp and res.sweep is not None:
        stamp = table_stamp(res.sweep)
    made = stamp.get(VERSION_KEY, "an unknown version (results without a stamp)")
    digest = stamp.get(DIGEST_KEY, "unknown")
    return (f'<footer id="provenance"><p>Results made by epcsim '
            f'<span id="made-by">{html.escape(made)}</span> from the scenario of digest '
            f'<code id="scenario-digest">{html.escape(digest)}</code>; report drawn by '
            f'epcsim <span id="drawn-by">{html.escape(version())}</span>.</p></footer>')
