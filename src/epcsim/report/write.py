"""``epcsim report DIR``: every figure as PNG and SVG, and ``report.html``, under DIR/report."""

from __future__ import annotations

import io
from pathlib import Path

from epcsim.report.html import page
from epcsim.report.plots import figures, pyplot, require_plots
from epcsim.report.results import Results, ResultsError, load_results


def write_report(results_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw what the results hold; returns the files written (report.html last)."""
    from epcsim.files import InputError, check_out, staged

    require_plots("the report")
    res = load_results(results_dir)
    try:
        target = check_out(res.path / "report" if out_dir is None else out_dir)
    except InputError as e:
        raise ResultsError(str(e)) from None
    # The report replaces its directory whole: never the results it is drawn from.
    here, there = res.path.resolve(), target.resolve()
    if there == here or there in here.parents:
        raise ResultsError(f"--out: {target} holds the results the report reads; give a "
                           "directory of its own")
    with staged(target, "report") as out:
        written = _draw(res, out)
    return [target / f.relative_to(out) for f in written]


def _draw(res: Results, out: Path) -> list[Path]:
    plt = pyplot()

    written: list[Path] = []
    images: list[tuple[str, str, bytes]] = []
    for f in figures(res):
        buf = io.BytesIO()
        f.fig.savefig(buf, format="png", dpi=110)
        png = out / f"{f.name}.png"
        png.write_bytes(buf.getvalue())
        svg = out / f"{f.name}.svg"
        f.fig.savefig(svg, format="svg")
        plt.close(f.fig)
        written += [png, svg]
        images.append((f.title, f.caption, buf.getvalue()))
    name = res.summary.get("scenario") or res.path.name
    doc = out / "report.html"
    doc.write_text(page(res, images, f"epcsim report: {name}"), encoding="utf-8")
    written.append(doc)
    return written
