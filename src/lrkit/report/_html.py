"""`write_report`: one self-contained HTML page for a comparison of training runs."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lrkit._io import figure_bytes, write_text_atomic
from lrkit._words import counted

if TYPE_CHECKING:
    from lrkit.train import CompareResult

__all__ = ["compare_section", "render_report", "write_report"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef7ee; }
code { font-size: 0.95em; }
img { max-width: 100%; }
.meta { color: #555; }
"""


def _png(fig: object) -> bytes:
    return figure_bytes(fig, "png", dpi=110)


def render_report(result: CompareResult, title: str, figures: Mapping[str, bytes]) -> str:
    """The HTML page: `title`, what ran, the table of runs, the interpretation lines, `figures`.

    Args:
        result: the runs.
        title: the page heading.
        figures: PNG bytes by caption, embedded as ``data:`` URLs in this order.
    """
    e = html.escape
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{e(title)}</h1>\n{compare_section(result, figures)}</body>\n</html>\n"
    )


def compare_section(result: CompareResult, figures: Mapping[str, bytes]) -> str:
    """The body of `render_report` without its heading: what ran, the table, the figures."""
    from lrkit.train import format_metric

    e = html.escape
    best = result.best()
    seeds = max((len(r.histories) for r in result.runs), default=0)
    notes = any(r.note for r in result.runs)
    head = ["run", "optimizer", "schedule", "lr", f"final val {result.metric} (mean ± std)", "diverged"]
    head += ["seconds per run"] + (["interpretation"] if notes else [])
    rows = []
    for r in result.runs:
        cells = [
            f"<td>{e(r.label)}</td>",
            f"<td>{e(r.optimizer)}</td>",
            f"<td><code>{e(r.schedule)}</code></td>",
            f'<td class="num">{"-" if r.lr is None else f"{r.lr:.3g}"}</td>',
            f'<td class="num">{e(format_metric(r))}</td>',
            f'<td class="num">{r.diverged}/{len(r.histories)}</td>',
            f'<td class="num">{r.seconds:.2f}</td>',
        ] + ([f"<td>{e(r.note)}</td>"] if notes else [])
        cls = ' class="best"' if r is best and len(result.runs) > 1 else ""
        rows.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    sugg = ", ".join(
        f"{e(k)}: {v:.3g}" if math.isfinite(v) else f"{e(k)}: none" for k, v in result.suggestions.items()
    )
    meta = (
        f"Task <code>{e(result.task)}</code>, {counted(result.epochs, 'epoch')} of "
        f"{counted(result.steps_per_epoch, 'step')}, "
        f"{counted(seeds, 'seed')} per run; LRs: {e(result.lr_source)}"
        + (f" ({sugg})" if sugg else "")
        + f". Wall time {result.seconds:.1f} s."
    )
    if best is not None and len(result.runs) > 1:
        meta += f" Best: {e(best.label)} ({e(format_metric(best))})."
    imgs = [
        f'<figure><img alt="{e(cap)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{e(cap)}</figcaption></figure>"
        for cap, png in figures.items()
    ]
    return (
        f'<p class="meta">{meta}</p>\n'
        "<table>\n<tr>"
        + "".join(f"<th>{e(h)}</th>" for h in head)
        + "</tr>\n"
        + "\n".join(rows)
        + "\n</table>\n"
        + "\n".join(imgs)
        + "\n"
    )


def write_report(
    result: CompareResult,
    out_dir: str | Path,
    title: str = "lrkit: training runs",
    *,
    figures: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``index.html`` into `out_dir` (created if needed) and return its path. The file is
    written atomically: a failed write leaves an earlier page there whole.

    The page holds everything: the table of runs (final validation metric mean ± std over seeds,
    divergences, seconds per run, and `explain`'s interpretation lines) and the figures as base64
    PNGs, so it can be mailed or archived as one file.

    Args:
        result: the result of `lrkit.train.compare` or `explain`.
        out_dir: the folder to write into.
        title: the page heading.
        figures: PNG bytes by caption; default: `lrkit.plot.plot_training` of `result`.

    Raises:
        ImportError: `figures` is not given and matplotlib is not installed.
        OSError: the folder or the file cannot be written.
    """
    if figures is None:
        from lrkit.plot import plot_training

        figures = {"training curves": _png(plot_training(result))}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out / "index.html", render_report(result, title, figures))
