"""``lrkit schedule``: show a schedule as a table, plot schedules, lint a schedule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import typer
from rich.table import Table

from lrkit._io import save_figure
from lrkit.cli._common import at_least_one, fail, load_spec, make_console
from lrkit.schedules import Schedule, ScheduleError, lint

schedule_app = typer.Typer(
    name="schedule",
    help="Inspect learning-rate schedules given as specs, e.g. 'warmup(10) >> cosine(0.1, steps=90)'.",
    no_args_is_help=True,
)

#: About this many rows when ``--every`` is not given.
DEFAULT_ROWS = 20

Spec = Annotated[str, typer.Argument(help="Schedule spec, e.g. 'warmup(10) >> cosine(0.1, steps=90)'.")]
Steps = Annotated[
    int, typer.Option("--steps", "-n", callback=at_least_one, help="Number of optimizer steps (>= 1).")
]
ShownSteps = Annotated[
    int | None,
    typer.Option(
        "--steps",
        "-n",
        callback=at_least_one,
        help="Number of optimizer steps (>= 1; default: up to where the schedule ends, if it does).",
    ),
]


def _length(steps: int | None, schedules: list[Schedule], specs: list[str]) -> int:
    """`steps`, or else the steps up to where the longest schedule ends; a schedule that does not
    end (a constant, an exponential decay, ...) needs ``--steps``."""
    if steps is not None:
        return steps
    for schedule, text in zip(schedules, specs, strict=True):
        if schedule.duration is None:
            fail(f"give --steps: {text.strip()!r} has no end of its own")
    return max(1, max(math.ceil(float(s.duration or 0)) for s in schedules))


def table_steps(steps: int, every: int | None = None) -> npt.NDArray[np.int64]:
    """The steps a table shows: every `every`-th of ``0 .. steps - 1``, always with the last.

    By default `every` gives about `DEFAULT_ROWS` rows.

    >>> table_steps(10, 4).tolist()
    [0, 4, 8, 9]
    """
    if every is None:
        every = max(1, math.ceil(steps / DEFAULT_ROWS))
    rows = np.arange(0, steps, every, dtype=np.int64)
    if rows[-1] != steps - 1:
        rows = np.append(rows, np.int64(steps - 1))
    return rows


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.6g}"


@schedule_app.command("show")
def show(
    spec: Spec,
    steps: ShownSteps = None,
    every: Annotated[
        int | None,
        typer.Option(
            "--every", "-e", callback=at_least_one, help="Show every K-th step (default: about 20 rows)."
        ),
    ] = None,
) -> None:
    """Print the LR (and momentum, when the schedule cycles it) at every K-th step."""
    s = load_spec(spec)
    steps = _length(steps, [s], [spec])
    rows = table_steps(steps, every)
    try:
        lr = s(rows)
        momentum = s.momentum(rows)
    except ScheduleError as e:
        fail(str(e))
    table = Table(title=spec.strip(), caption=f"{steps} steps")
    table.add_column("step", justify="right")
    table.add_column("lr", justify="right")
    if momentum is not None:
        table.add_column("momentum", justify="right")
    for i, step in enumerate(rows):
        cells = [str(int(step)), _fmt(float(lr[i]))]
        if momentum is not None:
            cells.append(_fmt(float(momentum[i])))
        table.add_row(*cells)
    make_console().print(table)


@schedule_app.command("plot")
def plot(
    specs: Annotated[list[str], typer.Argument(help="One or more schedule specs, drawn on one figure.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image file to write (e.g. lr.png).")],
    steps: ShownSteps = None,
    log: Annotated[bool, typer.Option("--log", help="Logarithmic LR axis.")] = False,
) -> None:
    """Plot one or several schedules on one figure, labelled by their spec text."""
    from lrkit.plot import plot_schedules

    schedules = [load_spec(text) for text in specs]
    steps = _length(steps, schedules, specs)
    try:
        fig = plot_schedules(schedules, steps, labels=[t.strip() for t in specs], log=log)
    except ImportError as e:
        fail(str(e), code=1)
    except ScheduleError as e:
        fail(str(e))
    except MemoryError:
        fail(f"--steps {steps} is too many steps to draw", code=1)
    try:
        written = save_figure(fig, output, dpi=120)
    except (OSError, ValueError) as e:
        fail(f"cannot write {output}: {e}", code=1)
    typer.echo(f"wrote {written}")


@schedule_app.command("lint")
def lint_command(spec: Spec, steps: Steps) -> None:
    """Check a schedule for a run of N steps; exit status 1 when there are warnings."""
    s = load_spec(spec)
    try:
        warnings = lint(s, steps)
    except ScheduleError as e:
        fail(str(e))
    except MemoryError:
        fail(f"--steps {steps} is too many steps to check at once", code=1)
    if not warnings:
        typer.echo("no problems found")
        return
    for w in warnings:
        typer.echo(str(w))
    raise typer.Exit(1)
