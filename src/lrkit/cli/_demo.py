"""``lrkit demo``: the schedule gallery (a figure, a summary table, an HTML page and the configs),
then the tour of a task: range test, schedules compared, tuning (`lrkit.cli._tour`)."""

from __future__ import annotations

import base64
import html
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lrkit._io import figure_bytes, write_atomic
from lrkit.cli._common import TaskArgument, TaskOption, fail, make_console, output_folder, task_name
from lrkit.schedules import LintWarning, Plateau, Schedule, lint, parse

#: The gallery: one panel per spec.
GALLERY_SPECS: tuple[str, ...] = (
    "constant(0.1)",
    "step(0.1, every=30, factor=0.1)",
    "multistep(0.1, milestones=[30, 80], factor=0.1)",
    "exponential(0.1, factor=0.95)",
    "polynomial(0.1, steps=100, power=2, end=0)",
    "cosine(0.1, steps=100, end=0.001)",
    "sgdr(0.1, period=10, mul=2, end=0)",
    'cyclic(0.001, 0.1, half=20, mode="triangular2")',
    "onecycle(0.1, steps=100)",
    "wsd(0.1, warmup=10, stable=70, decay=20, end=0)",
    "inverse_sqrt(0.1, warmup=10)",
    "warmup(10) >> cosine(0.1, steps=90)",
    "0.5 * cosine(0.1, steps=100)",
    "plateau(0.1, factor=0.5, patience=3)",
)

#: Steps drawn per panel.
GALLERY_STEPS = 100
#: A plateau needs several evaluations without improvement per reduction, so it gets longer.
PLATEAU_STEPS = 200
#: The simulated validation loss is reported this often (steps).
EVAL_EVERY = 10
#: Columns of the gallery grid.
COLUMNS = 4

DEFAULT_DIR = Path("demo-out")
#: The task of the tour.
DEFAULT_TASK = "mlp-digits"


@dataclass(frozen=True)
class GalleryEntry:
    """One panel of the gallery: the spec, the schedule drawn, and what lint says about it."""

    spec: str
    schedule: Schedule
    steps: int
    warnings: list[LintWarning]
    metrics: list[tuple[int, float]] = field(default_factory=list)

    @property
    def title(self) -> str:
        """Panel title: the spec, and a note on what was simulated or drawn besides the LR."""
        text = textwrap.fill(self.spec, 46)
        if self.metrics:
            text += f"\n(simulated val. loss reported every {EVAL_EVERY} steps, dots)"
        elif self.schedule.has_momentum:
            text += "\n(dashed: momentum, right axis)"
        return text

    def lr_at(self, step: int) -> float:
        """The LR of the drawn schedule at `step`."""
        return self.schedule(step)

    @property
    def reductions(self) -> list[float]:
        """Steps at which a plateau node of the schedule reduced the LR."""
        return [r for node in self.schedule.walk() if isinstance(node, Plateau) for r in node.reductions]

    @property
    def marks(self) -> tuple[int, int, int]:
        """The summarized steps: first, middle, last."""
        return 0, self.steps // 2, self.steps - 1

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``gallery.json``."""
        out: dict[str, Any] = {
            "spec": self.spec,
            "steps": self.steps,
            "config": self.schedule.to_config(),
            "lint": [{"code": w.code, "message": w.message, "step": w.step} for w in self.warnings],
        }
        if self.metrics:
            out["metrics"] = [[s, m] for s, m in self.metrics]
        return out


def simulate_plateau(
    schedule: Schedule, steps: int, every: int = EVAL_EVERY
) -> tuple[Schedule, list[tuple[int, float]]]:
    """Feed `schedule` a synthetic validation loss every `every` steps; return it and the losses.

    The loss decays towards a floor that is higher for a higher LR (as SGD noise would leave it)
    and is reported to two decimals, so it flattens: the plateau then reduces the LR, the loss
    drops to the lower floor, and flattens again.
    """
    loss = 2.0
    history: list[tuple[int, float]] = []
    for step in range(0, steps, every):
        if step:
            floor = 0.3 + 2.0 * schedule(step)
            loss = floor + 0.2 * (loss - floor)
        reported = round(loss, 2)
        history.append((step, reported))
        schedule = schedule.observe(step, reported)
    return schedule, history


def build_entries(specs: tuple[str, ...] = GALLERY_SPECS) -> list[GalleryEntry]:
    """Parse, (for plateaus) simulate, and lint every gallery spec."""
    entries = []
    for spec in specs:
        s = parse(spec)
        metrics: list[tuple[int, float]] = []
        steps = GALLERY_STEPS
        if s.has_plateau:
            steps = PLATEAU_STEPS
            s, metrics = simulate_plateau(s, steps)
        entries.append(GalleryEntry(spec, s, steps, lint(s, steps), metrics))
    return entries


def draw_gallery(entries: list[GalleryEntry]) -> bytes:
    """The grid figure, one small panel per entry, as PNG bytes."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        fail("the gallery needs matplotlib: pip install 'lrkit[plot]'", code=1)
    from lrkit.plot import plot_schedules

    rows = -(-len(entries) // COLUMNS)
    with matplotlib.rc_context({"font.size": 7, "axes.titlesize": 8}):
        fig = Figure(figsize=(4.2 * COLUMNS, 3.1 * rows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, COLUMNS, squeeze=False).ravel()
        for ax, e in zip(axes, entries, strict=False):
            plot_schedules(e.schedule, e.steps, ax=ax)
            ax.grid(True, alpha=0.3)
            ax.set_title(e.title)
            if e.metrics:
                loss_ax = ax.twinx()
                xs, ys = zip(*e.metrics, strict=True)
                loss_ax.plot(xs, ys, "o", markersize=3, color="C1")
                loss_ax.set_ylabel("val. loss")
        for ax in axes[len(entries) :]:
            ax.set_visible(False)
        return figure_bytes(fig, "png", dpi=100)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _lint_summary(warnings: list[LintWarning]) -> str:
    return ", ".join(w.code for w in warnings) if warnings else "ok"


def summary_table(entries: list[GalleryEntry]) -> Table:
    """The console summary: LR at the first, middle and last step, and lint findings."""
    table = Table(title="lrkit schedule gallery")
    table.add_column("spec", overflow="fold")
    table.add_column("steps", justify="right")
    for name in ("first", "middle", "last"):
        table.add_column(f"lr ({name})", justify="right")
    table.add_column("lint")
    for e in entries:
        table.add_row(e.spec, str(e.steps), *(_fmt(e.lr_at(t)) for t in e.marks), _lint_summary(e.warnings))
    return table


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1700px; color: #222; }
img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; margin-top: 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td.spec, td.lint { text-align: left; }
code { font-size: 0.95em; }
"""


def render_html(entries: list[GalleryEntry], png: bytes) -> str:
    """A self-contained page: the gallery PNG (base64) and the summary table with each spec."""
    e = html.escape
    rows = []
    for entry in entries:
        first, middle, last = (_fmt(entry.lr_at(t)) for t in entry.marks)
        findings = "<br>".join(e(str(w)) for w in entry.warnings) or "ok"
        note = ""
        if entry.metrics:
            losses = ", ".join(f"{m:g}" for _, m in entry.metrics)
            cuts = ", ".join(f"{r:g}" for r in entry.reductions) or "none"
            note = (
                f"<br><small>simulated validation loss every {EVAL_EVERY} steps: "
                f"{e(losses)}; LR reduced at steps {cuts}</small>"
            )
        rows.append(
            f'<tr><td class="spec"><code>{e(entry.spec)}</code>{note}</td><td>{entry.steps}</td>'
            f"<td>{first}</td><td>{middle}</td><td>{last}</td>"
            f'<td class="lint">{findings}</td></tr>'
        )
    data = base64.b64encode(png).decode("ascii")
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>lrkit schedule gallery</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>lrkit schedule gallery</h1>\n"
        "<p>Each panel is a schedule spec as <code>lrkit.schedules.parse</code> reads it, drawn "
        "against the optimizer step. The configs are in <code>gallery.json</code>.</p>\n"
        f'<img alt="schedule gallery" src="data:image/png;base64,{data}">\n'
        "<table>\n<tr><th>spec</th><th>steps</th><th>lr (first)</th><th>lr (middle)</th>"
        "<th>lr (last)</th><th>lint</th></tr>\n" + "\n".join(rows) + "\n</table>\n</body>\n</html>\n"
    )


def write_gallery(out_dir: Path, entries: list[GalleryEntry]) -> list[Path]:
    """Write ``gallery.png``, ``gallery.json`` and ``index.html`` into `out_dir`, each atomically,
    and none unless all three could be written (`write_atomic`; the page last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = draw_gallery(entries)
    data = {"schedules": [entry.to_json() for entry in entries]}
    return write_atomic(
        {
            out_dir / "gallery.png": png,
            out_dir / "gallery.json": json.dumps(data, indent=2, allow_nan=False) + "\n",
            out_dir / "index.html": render_html(entries, png),
        }
    )


def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for index.html and the figures and data.")
    ] = DEFAULT_DIR,
    ref: TaskArgument = None,
    task: TaskOption = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per schedule in the comparison.")] = 2,
    trials: Annotated[int, typer.Option("--trials", help="Trials of the tuning run.")] = 12,
) -> None:
    """The tour: the schedule gallery, then on a task the LR range test, constant / step / cosine /
    one-cycle compared at its suggestion, and a small tuning run with pruning, in one HTML page."""
    if seeds < 1 or trials < 1:
        fail(f"--seeds and --trials must be >= 1, got --seeds {seeds} --trials {trials}")
    name = task_name(ref, task, "demo", DEFAULT_TASK)
    output = output_folder(output)
    entries = build_entries()
    try:
        paths = write_gallery(output, entries)
    except OSError as e:
        fail(f"cannot write to {output}: {e}", code=1)
    console = make_console()
    console.print(summary_table(entries))
    for p in paths:
        typer.echo(f"wrote {p}")
    try:
        import torch  # noqa: F401
    except ImportError:
        typer.echo(
            "torch is not installed: skipping the range test, comparison and tuning "
            "(pip install 'lrkit[all]')"
        )
        return
    from lrkit.cli._tour import run_tour, summary
    from lrkit.tasks import TaskError

    try:
        tour = run_tour(output, name, seeds=seeds, trials=trials, console=console)
    except ImportError as e:
        fail(str(e), code=1)
    except (TaskError, ValueError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot write to {output}: {e}", code=1)
    console.print(summary(tour))
    typer.echo(f"wrote {output / 'index.html'} (one self-contained page)")
