"""``lrkit tune`` and ``lrkit study show|plot``: search, then refit; inspect a stored study."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lrkit._io import write_atomic
from lrkit._words import counted
from lrkit.cli._common import (
    TaskArgument,
    TaskOption,
    check_task_epochs,
    fail,
    interrupted,
    make_console,
    output_folder,
    task_name,
    warnings_printed,
)

study_app = typer.Typer(help="Inspect a stored tuning study.", no_args_is_help=True)

_STATES = {1: "COMPLETE", 2: "PRUNED", 3: "FAIL"}


def _table(result: Any, limit: int = 15) -> Table:
    names = sorted({k for t in result.trials for k in t.params})
    title = f"study {result.study}: {counted(len(result.trials), 'trial')} (best first, top {limit})"
    table = Table(title=title)
    for h in ["trial", "state", f"val {result.metric}", *names, "epochs"]:
        table.add_column(h, justify="right" if h not in ("state",) else "left")
    done = [t for t in result.trials if t.value is not None]
    done.sort(key=lambda t: t.value, reverse=result.mode == "max")
    for t in done[:limit]:
        cells = [str(t.number), t.state, f"{t.value:.4g}"]
        cells += [
            f"{t.params[n]:.3g}" if isinstance(t.params.get(n), float) else str(t.params.get(n, "-"))
            for n in names
        ]
        table.add_row(*cells, str(t.epochs))
    return table


def _write(result: Any, output: Path, console: Console) -> None:
    """Write the figures, ``tuning.json`` and ``tuning.html`` into `output`, each atomically, and
    none unless all could be written (`write_atomic`; the page last)."""
    from lrkit.plot import plot_tuning
    from lrkit.report import render_tuning_report
    from lrkit.report._html import _png

    try:
        output.mkdir(parents=True, exist_ok=True)
        pngs = {name: _png(fig) for name, fig in plot_tuning(result).items()}
        files: dict[Path, bytes | str] = {output / f"tuning-{name}.png": png for name, png in pngs.items()}
        files[output / "tuning.json"] = result.to_json() + "\n"
        files[output / "tuning.html"] = render_tuning_report(result, pngs)
        write_atomic(files)
    except ImportError as e:
        fail(str(e), code=1)
    except OSError as e:
        fail(f"cannot write to {output}: {e}", code=1)
    console.print(f"wrote {output / 'tuning.html'}, {output / 'tuning.json'} and {len(pngs)} PNG figures")


def _kept(study: str | None, storage: str | None, output: Path) -> str:
    """What an interrupted ``lrkit tune`` keeps: the finished trials of a stored study."""
    if study is None and storage is None:
        return ""
    where = "the --storage database" if storage is not None else str(output / "lrkit-studies.db")
    name = "the study" if study is None else f"study {study!r}"
    return f"the finished trials are kept in {name} in {where}; the same command joins it"


def tune(
    ref: TaskArgument = None,
    task: TaskOption = None,
    strategy: Annotated[str, typer.Option("--strategy", help="grid, random, tpe or gp.")] = "tpe",
    trials: Annotated[
        int | None, typer.Option("--trials", help="Trials this command runs (all workers).")
    ] = None,
    cv: Annotated[
        int | None, typer.Option("--cv", help="k-fold cross-validation on train+val (k >= 2).")
    ] = None,
    pruner: Annotated[str, typer.Option("--pruner", help="none, median, asha or hyperband.")] = "none",
    space: Annotated[str, typer.Option("--space", help="A YAML file of parameters, or 'auto'.")] = "auto",
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Epochs per trial (default: the task's).")
    ] = None,
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="Optimizer when the space has none.")
    ] = "adam",
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule", help="constant, step, cosine, onecycle or a spec, when the space has none."
        ),
    ] = "constant",
    storage: Annotated[
        str | None, typer.Option("--storage", help="sqlite:///file.db or postgresql://user@host:port/db.")
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name; an existing one is joined.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes.")] = 1,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds after which no trial starts.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the samplers, folds and models.")] = 0,
    heartbeat: Annotated[
        int,
        typer.Option("--heartbeat", help="Seconds between heartbeats; a trial silent for 3 is re-run."),
    ] = 10,
    refit: Annotated[
        bool, typer.Option("--refit/--no-refit", help="Retrain the best on train+val, test once.")
    ] = True,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the report and final model.")
    ] = Path("lrkit-tune"),
) -> None:
    """Tune the learning rate (and friends): search, cross-validate, prune, refit, report."""
    name = task_name(ref, task, "tune")
    check_task_epochs(name, epochs)
    output = output_folder(output)
    import torch

    from lrkit.tasks import TaskError
    from lrkit.tune import tune as run_tune
    from lrkit.tune._storage import database_failure

    torch.set_num_threads(1)
    console = make_console()
    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    best = [math.nan]
    direction = [1.0]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        job = bar.add_task("trials", total=trials)

        def on_trial(number: int, state: int, value: float) -> None:
            if (
                state == 1
                and math.isfinite(value)
                and (math.isnan(best[0]) or direction[0] * (value - best[0]) > 0)
            ):
                best[0] = value
            bar.update(
                job,
                advance=1,
                description=f"trial {number} {_STATES.get(state, '?').lower()}, best {best[0]:.4g}",
            )

        try:
            from lrkit.tasks import load

            direction[0] = 1.0 if load(name).mode == "max" else -1.0
            with warnings_printed(console):
                result = run_tune(
                    name, space, strategy=strategy, trials=trials, cv=cv, pruner=pruner, epochs=epochs,
                    optimizer=optimizer, schedule=schedule, storage=storage, study=study, workers=workers,
                    timeout=timeout, seed=seed, refit=refit, out=output, on_trial=on_trial,
                    heartbeat=(heartbeat, 3 * heartbeat),
                )  # fmt: skip
        except (TaskError, ValueError) as e:
            fail(str(e))
        except RuntimeError as e:
            fail(str(e), code=1)
        except OSError as e:  # the refit's model
            fail(f"cannot write to {output}: {e}", code=1)
        except KeyboardInterrupt:
            interrupted(_kept(study, storage, output))
        except Exception as e:  # the database failed under the study: one line, as for the rest
            said = database_failure(e, storage)
            if said is None:
                raise
            fail(said, code=1)
    console.print(_table(result))
    console.print(result.summary())
    if result.checkpoint is not None:
        console.print(f"final model: {result.checkpoint}")
    _write(result, output, console)


@study_app.command("show")
def show(
    storage: Annotated[str, typer.Option("--storage", help="The study's database URL.")],
    study: Annotated[str, typer.Option("--study", help="The study's name.")],
    top: Annotated[int, typer.Option("--top", min=1, help="Rows of the table.")] = 15,
) -> None:
    """The best trials of a stored study, its settings and its progress."""
    from lrkit.tune import load_result

    try:
        result = load_result(storage, study)
    except ValueError as e:
        fail(str(e))
    console = make_console()
    console.print(_table(result, top))
    console.print(result.summary())


@study_app.command("plot")
def plot(
    storage: Annotated[str, typer.Option("--storage", help="The study's database URL.")],
    study: Annotated[str, typer.Option("--study", help="The study's name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the figures and page.")] = Path(
        "lrkit-study"
    ),
) -> None:
    """The figures and HTML page of a stored study (history, LR against score, importance)."""
    from lrkit.tune import load_result

    output = output_folder(output)
    try:
        result = load_result(storage, study)
    except ValueError as e:
        fail(str(e))
    _write(result, output, make_console())
