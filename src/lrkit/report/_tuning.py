"""`write_tuning_report`: one self-contained HTML page for a tuning study."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrkit._io import write_text_atomic
from lrkit._words import counted
from lrkit.report._html import _CSS

if TYPE_CHECKING:
    from lrkit.tune import TuneResult

__all__ = ["render_tuning_report", "write_tuning_report"]


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def render_tuning_report(
    result: TuneResult, figures: Mapping[str, bytes], title: str = "lrkit: tuning"
) -> str:
    """The page: the settings, the best configuration and its refit test score, the figures, every trial."""
    e = html.escape
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{_CSS}</style></head>"
        f"<body><h1>{e(title)}</h1>{tuning_section(result, figures)}</body></html>\n"
    )


def tuning_section(result: TuneResult, figures: Mapping[str, bytes]) -> str:
    """The body of `render_tuning_report` without its heading."""
    e = html.escape
    names = sorted({k for t in result.trials for k in t.params})
    best = result.best
    validation = "hold-out validation" if not result.cv else f"{result.cv}-fold cross-validation"
    where = "" if result.storage is None else f" in <code>{e(result.storage)}</code>"
    lines = [
        f"<p class='meta'>task <b>{e(result.task)}</b>; strategy <b>{e(result.strategy)}</b>; pruner "
        f"<b>{e(result.pruner)}</b>; {validation}; "
        f"{counted(result.epochs, 'epoch')} per trial; study <code>{e(result.study)}</code>"
        f"{where}</p>",
        f"<p>{counted(len(result.trials), 'trial')}: {result.count('COMPLETE')} complete, "
        f"{result.count('PRUNED')} pruned, {result.count('FAIL')} failed; "
        f"{counted(result.epochs_spent, 'epoch')} in all.</p>",
    ]
    if best is not None:
        params = ", ".join(f"<code>{e(k)}={_value(v)}</code>" for k, v in best.params.items())
        lines.append(
            f"<p><b>best</b>: trial {best.number}, validation {e(result.metric)} {_value(best.value)} "
            f"with {params}.</p>"
        )
    if result.test_metric is not None and math.isfinite(result.test_metric):
        lines.append(
            f"<p><b>refit</b> on train+val, scored once on the test split: test {e(result.metric)} "
            f"<b>{_value(result.test_metric)}</b>.</p>"
        )
    elif result.test_metric is not None:
        lines.append("<p><b>refit</b> on train+val: the training diverged, and no final model was saved.</p>")
    for caption, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        lines.append(
            f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )
    head = "".join(
        f"<th>{e(h)}</th>"
        for h in ["trial", "state", f"val {result.metric}", *names, "epochs", "seconds", "worker", "re-runs"]
    )
    rows = []
    for t in sorted(result.trials, key=lambda t: t.number):
        cls = " class='best'" if best is not None and t.number == best.number else ""
        cells = [str(t.number), t.state, _value(t.value), *(_value(t.params.get(n)) for n in names)]
        cells += [str(t.epochs), _value(t.seconds), e(t.worker)]
        cells.append("-" if t.retried_from is None else str(t.retried_from))
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    lines.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    return "\n".join(lines) + "\n"


def write_tuning_report(
    result: TuneResult,
    out_dir: str | Path,
    *,
    title: str = "lrkit: tuning",
    figures: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``tuning.html`` (with its figures embedded) into `out_dir` and return its path,
    atomically (a failed write leaves an earlier page there whole).

    Args:
        result: what `lrkit.tune.tune` or `load_result` returned.
        out_dir: the folder, created if needed.
        figures: PNG bytes by caption; default: `lrkit.plot.plot_tuning` of `result`.
    """
    if figures is None:
        from lrkit.plot import plot_tuning
        from lrkit.report._html import _png

        figures = {name: _png(fig) for name, fig in plot_tuning(result).items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out / "tuning.html", render_tuning_report(result, figures, title))
