"""``lrkit compare``: train a task under several schedules, optimizers and LRs, over seeds."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperCommand

from lrkit._io import write_atomic
from lrkit._words import counted
from lrkit.cli._common import (
    TaskArgument,
    TaskOption,
    check_task_epochs,
    duration,
    fail,
    make_console,
    output_folder,
    task_name,
    warnings_printed,
)

if TYPE_CHECKING:
    from lrkit.train import CompareResult

#: Options that take several values after one flag: ``--schedules constant onecycle``.
LIST_OPTIONS = frozenset({"--schedules", "--optimizers", "--lrs"})


def _is_value(token: str) -> bool:
    """A token that is a value, not an option: anything not starting with '-', or a number."""
    if not token.startswith("-"):
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


def spread_values(args: Sequence[str], flags: frozenset[str] = LIST_OPTIONS) -> list[str]:
    """Rewrite ``--flag a b c`` into ``--flag a --flag b --flag c`` for the flags in `flags`.

    The values of a flag run until the next token that looks like an option (``-x``, ``--x``;
    a negative number is a value) or ``--``, after which everything is left as it is.

    >>> spread_values(["--schedules", "constant", "onecycle", "--seeds", "2"])
    ['--schedules', 'constant', '--schedules', 'onecycle', '--seeds', '2']
    """
    out: list[str] = []
    current: str | None = None
    count = 0
    for i, token in enumerate(args):
        if current is not None and _is_value(token):
            out += [current, token]
            count += 1
            continue
        if current is not None and count == 0:
            out.append(current)  # no value: let the parser say so
        current = None
        if token == "--":
            out += list(args[i:])
            return out
        if token in flags:
            current, count = token, 0
            continue
        out.append(token)
    if current is not None and count == 0:
        out.append(current)
    return out


class ListOptionsCommand(TyperCommand):
    """A command whose list options take several values after one flag (see `spread_values`)."""

    list_options: ClassVar[frozenset[str]] = LIST_OPTIONS

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Spread the values of the list options, then parse as usual."""
        return super().parse_args(ctx, spread_values(args, self.list_options))


def split_values(values: Sequence[str] | None, sep: str) -> list[str]:
    """Every item of `values` split at `sep`, stripped, empty items dropped."""
    return [part.strip() for v in values or [] for part in v.split(sep) if part.strip()]


def parse_lrs(values: Sequence[str] | None) -> Literal["auto"] | list[float] | None:
    """``auto``, ``default`` (None) or LRs (commas or spaces between them); exit status 2 otherwise."""
    items = [p for v in split_values(values, ",") for p in v.split()]
    if not items or items == ["default"]:
        return None
    if items == ["auto"]:
        return "auto"
    out = []
    for x in items:
        try:
            lr = float(x)
        except ValueError:
            fail(f"--lrs: expected 'auto', 'default' or positive numbers, got {x!r}")
        if not (0.0 < lr < math.inf):
            fail(f"--lrs: every LR must be a finite number > 0, got {x!r}")
        out.append(lr)
    return out


@contextmanager
def run_progress(console: Console, what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over finished training runs (shown on a terminal only)."""
    columns: list[Any] = [TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        job = bar.add_task(what, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)

        yield advance


def runs_table(result: CompareResult, title: str, *, notes: bool = True) -> Table:
    """The runs as a rich table: LR, final metric mean ± std, divergences, seconds (and notes)."""
    from lrkit.train import format_metric

    best = result.best()
    notes = notes and any(r.note for r in result.runs)
    table = Table(title=title)
    for name in ("run", "lr", f"final val {result.metric}", "diverged", "s/run"):
        table.add_column(name, justify="left" if name == "run" else "right")
    if notes:
        table.add_column("interpretation", overflow="fold")
    for r in result.runs:
        row = [
            r.label,
            "-" if r.lr is None else f"{r.lr:.3g}",
            format_metric(r),
            f"{r.diverged}/{len(r.histories)}",
            f"{r.seconds:.2f}",
        ] + ([r.note] if notes else [])
        table.add_row(*row, style="bold" if r is best and len(result.runs) > 1 else None)
    return table


def write_outputs(result: CompareResult, out: Path, title: str) -> list[Path]:
    """Write ``curves.png``, ``table.md``, ``histories.json`` and ``index.html`` into `out`, each
    atomically, and none unless all four could be written (`write_atomic`; the page last)."""
    from lrkit.plot import plot_training
    from lrkit.report import render_report
    from lrkit.report._html import _png

    png, table, hist, page = (out / n for n in ("curves.png", "table.md", "histories.json", "index.html"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        curves = _png(plot_training(result))
        return write_atomic(
            {
                png: curves,
                table: f"# {title}\n\n" + result.table_markdown(),
                hist: json.dumps(result.to_dict(), indent=1),
                page: render_report(result, title, {"training curves": curves}),
            }
        )
    except ImportError as e:
        fail(str(e), code=1)
    except OSError as e:
        fail(f"cannot write to {out}: {e}", code=1)


def compare(
    ref: TaskArgument = None,
    task: TaskOption = None,
    schedules: Annotated[
        list[str] | None,
        typer.Option(
            "--schedules",
            help="Schedule specs, several after one flag: --schedules constant onecycle "
            "'cosine(0.01, steps=200)'. 'constant' and 'onecycle' use each run's LR; a ';' also "
            "separates specs.  [default: constant]",
            show_default=False,
        ),
    ] = None,
    optimizers: Annotated[
        list[str] | None,
        typer.Option(
            "--optimizers",
            help="Optimizer names, several after one flag (or separated by commas): "
            "--optimizers adam momentum.  [default: adam]",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per combination (0 .. K-1).", min=1)] = 1,
    lrs: Annotated[
        list[str] | None,
        typer.Option(
            "--lrs",
            help="'auto' (the LR range test's suggestion per optimizer), 'default' (each "
            "optimizer's default LR) or LRs, several after one flag: --lrs 1e-3 1e-2.  "
            "[default: default]",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Epochs per run (default: the task's).", min=1)
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Worker processes (default: one per core).", min=1),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder for curves.png, table.md, histories.json, index.html."),
    ] = Path("lrkit-compare"),
) -> None:
    """Train every (schedule, optimizer, LR, seed) combination; a table, curves and an HTML page."""
    from lrkit.train import compare as run_compare

    name = task_name(ref, task, "compare")
    check_task_epochs(name, epochs)
    output = output_folder(output)
    specs = split_values(schedules, ";") or ["constant"]
    opts = split_values(optimizers, ",") or ["adam"]
    lr_choice = parse_lrs(lrs)
    console = make_console()
    try:
        with warnings_printed(console), run_progress(console, "training runs") as advance:
            result = run_compare(
                name,
                specs,
                opts,
                seeds=seeds,
                lrs=lr_choice,
                epochs=epochs,
                workers=workers,
                on_run=advance,
            )
    except ValueError as e:
        fail(str(e).removeprefix("compare: "))
    title = f"lrkit compare: {result.task}"
    console.print(runs_table(result, title))
    from lrkit import optim

    for key, value in result.suggestions.items():
        if optim.get(key.split("/")[0]).learning_rate_free:
            console.print(f"{key}: {value:.3g} (learning-rate-free: its default multiplier, no range test)")
        else:
            console.print(f"range test, {key}: {value:.3g}")
    paths = write_outputs(result, output, title)
    console.print(
        f"{counted(len(result.histories()), 'run')} in {duration(result.seconds)}; wrote "
        + ", ".join(map(str, paths))
    )
