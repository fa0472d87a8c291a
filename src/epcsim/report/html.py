"""One self-contained HTML page: what the run found, the summary, the tables and every
figure, images inlined.

Numbers carry their units (MiB, ms, %, ×) and thousands separators; a table wider than the
page is turned (a row per measure, a column per entry) when it has few entries, else it
keeps its first columns and says where the rest are.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from epcsim.provenance import DIGEST_KEY, VERSION_KEY, table_stamp, version
from epcsim.report.finding import (
    Number,
    findings,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    fmt_times,
    sweep_findings,
)
from epcsim.report.results import Results, ResultsError

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222;
       background: #fff; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
p.finding { font-size: 1.05em; line-height: 1.5; max-width: 60em; }
p.finding .num { font-weight: 600; white-space: nowrap; }
table { border-collapse: collapse; font-size: 0.85em; max-width: 100%; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
p.note { color: #555; font-size: 0.85em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
footer { margin-top: 3em; color: #555; font-size: 0.85em; border-top: 1px solid #ccc; }
"""

# A table of more columns than this does not fit 1000 pixels at the page's font.
MAX_COLUMNS = 8
# ... and is turned when it has at most this many rows.
TURN_ROWS = 8

BYTE_KEYS = {"node_epc", "peak", "epc_request", "epc_limit", "size", "max", "current",
             "capacity", "memory_max", "memory_current", "memory_peak", "bytes"}
# Columns a wide table keeps first, in this order, when it must drop some.
FIRST = ("name", "path", "node", "mode", "status", "tenant", "pages", "requests", "faults",
         "miss_ratio", "slowdown", "peak", "epc_request", "epc_limit", "limit_hits",
         "paging_cost_s", "eldu", "ewb", "host_ewb", "reclaimed")
# Measured on the host's clock: kept, but not what a reader compares.
WALL = {"wall_s", "requests_per_s", "compile_s", "setup_s", "replay_s"}


def fmt(key: str, value: Any) -> str:
    """``value`` of summary key ``key`` with its unit and thousands separators."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt(k if not key.endswith('_s') else key, v)}"
                         for k, v in value.items())
    if not isinstance(value, (int, float)):
        return str(value)
    if key == "epcsim_version":
        return str(value)
    if key in BYTE_KEYS or key.endswith(("_bytes", "_bytes_per_page")):
        return fmt_bytes(value) if value >= 1024 else f"{value:,.0f} B"
    if key.endswith("_pages") or key == "pages":
        return f"{value:,.0f} pages ({fmt_bytes(value * 4096)})" if value >= 256 else \
            f"{value:,.0f} pages"
    if key.endswith("_s") or key == "s":
        return fmt_seconds(value)
    if "ratio" in key:
        return fmt_ratio(value)
    if key == "slowdown" or key.endswith("slowdown"):
        return fmt_times(value)
    if isinstance(value, int):
        return f"{value:,}"
    if key.endswith("_per_s"):
        return f"{value:,.0f} /s"
    return f"{value:,.4g}"


def _cell(key: str, value: Any) -> str:
    cls = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else ""
    return f"<td{cls}>{html.escape(fmt(key, value))}</td>"


def _table(rows: list[dict[str, Any]], title: str, source: str = "") -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    note = ""
    if len(cols) > MAX_COLUMNS and len(rows) <= TURN_ROWS:
        label = next((c for c in ("name", "path", "vm") if c in cols), None)
        heads = [str(r.get(label, i)) for i, r in enumerate(rows)] if label else \
            [str(i) for i in range(len(rows))]
        head = "<th></th>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads)
        body = "".join("<tr><th>" + html.escape(c) + "</th>" +
                       "".join(_cell(c, r.get(c, "")) for r in rows) + "</tr>"
                       for c in cols if c != label)
        return (f"<h2>{html.escape(title)}</h2>\n<table class=\"turned\"><tr>{head}</tr>"
                f"{body}</table>\n")
    if len(cols) > MAX_COLUMNS:
        keep = [c for c in FIRST if c in cols][:MAX_COLUMNS]
        keep += [c for c in cols if c not in keep][:MAX_COLUMNS - len(keep)]
        dropped = len(cols) - len(keep)
        cols = [c for c in cols if c in keep]
        note = (f'<p class="note">{dropped} more columns in '
                f"{html.escape(source or 'the results')}.</p>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(c, r.get(c, "")) for c in cols) + "</tr>"
                   for r in rows)
    return f"<h2>{html.escape(title)}</h2>\n<table><tr>{head}</tr>{body}</table>\n{note}"


def _sentence(parts: list[Any]) -> str:
    out = []
    for p in parts:
        if isinstance(p, Number):
            key = f' data-key="{html.escape(p.key)}"' if p.key else ""
            out.append(f'<span class="num"{key} data-value="{p.value!r}">'
                       f"{html.escape(p.text)}</span>")
        else:
            out.append(html.escape(str(p)))
    return "".join(out)


def finding(res: Results) -> str:
    """The first paragraph: what the run found (empty when nothing can be said)."""
    try:
        sentences = findings(res) + sweep_findings(res)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        # The summary is not what epcsim writes (edited by hand, or another program's).
        raise ResultsError(f"summary.json: its run summary is not what epcsim writes "
                           f"({type(e).__name__}: {str(e)[:60]})") from None
    if not sentences:
        return ""
    return ('<p class="finding" id="finding">' + " ".join(_sentence(s) for s in sentences)
            + "</p>")


# Counts the figures that loaded and measures the widest table against the page, for whoever
# looks at the page (the browser test reads both from the body's attributes).
CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("figure img"), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) ok += 1; });
  document.body.setAttribute("data-figures", ok + "/" + imgs.length);
  var widest = 0;
  document.querySelectorAll("table").forEach(function (t) {
    widest = Math.max(widest, t.getBoundingClientRect().right);
  });
  document.body.setAttribute("data-widest-table", Math.ceil(widest) + "/" +
    Math.ceil(document.body.getBoundingClientRect().right));
});
</script>"""


def page(res: Results, images: list[tuple[str, str, bytes]], title: str) -> str:
    """``images``: (title, caption, PNG bytes) in order."""
    parts = [(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"),
             f"<h1>{html.escape(title)}</h1>", finding(res)]
    scalars = [{"measure": k, "value": v} for k, v in res.summary.items()
               if not isinstance(v, list) and k not in WALL]
    parts.append(_summary(scalars))
    for key, value in res.summary.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            if not all(isinstance(r, dict) for r in value):
                raise ResultsError(f"summary.json: {key[:40]} mixes rows and other values, "
                                   "which epcsim does not write")
            parts.append(_table(value, key.replace("_", " "), _source(key)))
    if res.sweep is not None:
        keep = [c for c in res.sweep.column_names if c == "point" or c.startswith("param.")
                or c in ("miss_ratio", "slowdown", "faults", "ewb", "footprint_pages",
                         "epc_pages", "error")]
        parts.append(_table(res.sweep.select(keep).to_pylist(), "Sweep", "sweep.parquet"))
    for fig_title, caption, png in images:
        data = base64.b64encode(png).decode()
        parts.append(f"<h2>{html.escape(fig_title)}</h2><figure>"
                     f'<img alt="{html.escape(fig_title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append(footer(res))
    parts.append(CHECK)
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def _summary(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><th>{html.escape(r['measure'])}</th>"
                   f"{_cell(r['measure'], r['value'])}</tr>" for r in rows)
    return f"<h2>Summary</h2>\n<table>{body}</table>\n"


def _source(key: str) -> str:
    return {"per_enclave": "enclaves.parquet", "vms": "vms.parquet", "pods": "pods.parquet",
            "per_node": "nodes.parquet", "cgroups": "cgroups.parquet"}.get(
        key, "summary.json")


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
