"""The main job of ``lrkit demo`` on a task: the range test, schedules compared at its
suggestion, a small tuning run with pruning, each added as a section of the demo's HTML page."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lrkit._io import figure_bytes, write_atomic
from lrkit._words import counted

#: The optimizer of the tour: SGD with momentum 0.9, whose LR matters most.
OPTIMIZER = "momentum"


@dataclass
class Tour:
    """What the tour found, for the terminal summary."""

    task: str
    constant_lr: float
    peak_lr: float
    best_schedule: str
    best_metric: float
    tuned_lr: float
    tuned_metric: float
    test_metric: float
    metric: str


def _img(png: bytes, alt: str) -> str:
    return (
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
    )


def _add_section(page: Path, section: str, files: Mapping[Path, bytes | str]) -> None:
    """Write `files` and `section`, added to the HTML `page`: each atomically, and none unless
    all could be written (`write_atomic`; the page last)."""
    text = page.read_text(encoding="utf-8")
    write_atomic({**files, page: text.replace("</body>", section + "</body>")})


def schedules_at(lr: float, peak: float, total: int) -> list[str]:
    """Constant, step decay, cosine and one-cycle specs for a run of `total` steps.

    The first three start at the range test's constant-LR suggestion `lr`; one-cycle peaks at its
    one-cycle suggestion `peak` (its warm-up lets it go higher).

    >>> for spec in schedules_at(0.05, 0.2, 100):
    ...     print(spec)
    constant(0.05)
    multistep(0.05, milestones=[50, 75], factor=0.1)
    cosine(0.05, steps=100)
    onecycle(0.2, steps=100)
    """
    a, b = max(1, total // 2), max(2, (3 * total) // 4)
    return [
        f"constant({lr:.3g})",
        f"multistep({lr:.3g}, milestones=[{a}, {b}], factor=0.1)",
        f"cosine({lr:.3g}, steps={total})",
        f"onecycle({peak:.3g}, steps={total})",
    ]


def run_tour(out_dir: Path, task_name: str, *, seeds: int = 2, trials: int = 12, console: Console) -> Tour:
    """Range test, comparison and tuning on `task_name`; sections appended to ``out_dir/index.html``."""
    import torch

    from lrkit.plot import plot_training, plot_tuning
    from lrkit.report import compare_section, tuning_section
    from lrkit.report._html import _png
    from lrkit.tasks import load
    from lrkit.train import compare, range_test
    from lrkit.tune import LogFloat, tune
    from lrkit.tune._tune import AUTO_SPAN

    torch.set_num_threads(1)
    task = load(task_name)
    total = task.epochs * task.steps_per_epoch()
    page = out_dir / "index.html"

    console.print(
        f"[bold]1/3 range test[/bold] on {task.name} ({OPTIMIZER}), for a constant LR and a one-cycle peak"
    )
    const = range_test(task, OPTIMIZER, "constant")
    cycle = range_test(task, OPTIMIZER, "onecycle")
    for r in (const, cycle):
        if not math.isfinite(r.suggestion):
            raise ValueError(f"the range test on {task.name} gave no suggestion (status {r.status!r})")
    const_png = figure_bytes(const.plot(), "png", dpi=120)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{const.suggestions[k]:.3g}</td>"
        f"<td>{cycle.suggestions.get(k, math.nan):.3g}</td></tr>"
        for k in const.suggestions
    )
    _add_section(
        page,
        f"<h2>1. LR range test: {html.escape(task.name)}, SGD with momentum 0.9</h2>\n"
        f"<p>Suggested constant LR <b>{const.suggestion:.3g}</b>, "
        f"one-cycle peak <b>{cycle.suggestion:.3g}</b> "
        f"(each verified on the validation split within one training run of {total} steps).</p>\n"
        f"<table><tr><th>rule</th><th>constant</th><th>one-cycle peak</th></tr>{rows}</table>\n"
        f"{_img(const_png, 'LR range test')}\n",
        {out_dir / "lr_find.png": const_png, out_dir / "lr_find.json": const.to_json() + "\n"},
    )

    specs = schedules_at(const.suggestion, cycle.suggestion, total)
    console.print(
        f"[bold]2/3 compare[/bold] constant, step, cosine and one-cycle, {counted(seeds, 'seed')} each"
    )
    result = compare(task_name, schedules=specs, optimizers=[OPTIMIZER], seeds=seeds)
    curves = _png(plot_training(result))
    _add_section(
        page,
        "<h2>2. Schedules at the suggested LR</h2>\n" + compare_section(result, {"training curves": curves}),
        {out_dir / "compare.png": curves},
    )
    best = result.best()

    span = 10.0**AUTO_SPAN  # the space `tune(space="auto")` would search, without a second range test
    lo, hi = const.suggestion / span, const.suggestion * span
    console.print(
        f"[bold]3/3 tune[/bold] the constant LR in [{lo:.3g}, {hi:.3g}]: TPE, {counted(trials, 'trial')}, "
        "ASHA pruning"
    )
    tuned = tune(
        task,
        {"lr": LogFloat(float(f"{lo:.4g}"), float(f"{hi:.4g}"))},
        strategy="tpe",
        pruner="asha",
        trials=trials,
        optimizer=OPTIMIZER,
        schedule="constant",
        first={"lr": float(f"{const.suggestion:.3g}")},  # the LR the comparison trained (`schedules_at`)
        out=out_dir / "tune",
    )
    figures = {name: _png(f) for name, f in plot_tuning(tuned).items()}
    _add_section(
        page,
        "<h2>3. Tuning the LR</h2>\n" + tuning_section(tuned, figures),
        {out_dir / "tuning.json": tuned.to_json() + "\n"},
    )
    return Tour(
        task=task.name,
        constant_lr=const.suggestion,
        peak_lr=cycle.suggestion,
        best_schedule=best.schedule if best is not None else "-",
        best_metric=best.metric_mean if best is not None else math.nan,
        tuned_lr=float(tuned.best_params.get("lr", math.nan)),
        tuned_metric=tuned.best_value,
        test_metric=math.nan if tuned.test_metric is None else tuned.test_metric,
        metric=task.metric,
    )


def summary(t: Tour) -> Table:
    """The terminal summary of the tour."""
    table = Table(title=f"lrkit demo: {t.task}")
    table.add_column("step")
    table.add_column("result")
    table.add_row("range test", f"constant LR {t.constant_lr:.3g}; one-cycle peak {t.peak_lr:.3g}")
    table.add_row("best schedule", f"{t.best_schedule}: val {t.metric} {t.best_metric:.4g}")
    table.add_row("tuned constant LR", f"{t.tuned_lr:.3g}: val {t.metric} {t.tuned_metric:.4g}")
    table.add_row("refit on train+val", f"test {t.metric} {t.test_metric:.4g}")
    return table
