"""``lrkit explain``: the suggested LR against ten times smaller and ten times larger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lrkit.cli._common import (
    TaskArgument,
    TaskOption,
    check_task_epochs,
    fail,
    make_console,
    output_folder,
    task_name,
)
from lrkit.cli._compare import run_progress, runs_table, write_outputs
from lrkit.cli._find import refuse_learning_rate_free


def explain(
    ref: TaskArgument = None,
    task: TaskOption = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="An optimizer name.")] = "adam",
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Epochs per run (default: the task's).", min=1)
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the model and the batch order.", min=0)] = 0,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes (default: one per core).", min=1)
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder for curves.png, table.md, histories.json, index.html."),
    ] = Path("lrkit-explain"),
) -> None:
    """Train at the range test's LR, a tenth of it and ten times it; say what each run shows."""
    from lrkit.train import explain as run_explain

    name = task_name(ref, task, "explain")
    refuse_learning_rate_free(optimizer, "explain")
    check_task_epochs(name, epochs)
    output = output_folder(output)
    console = make_console()
    try:
        with run_progress(console, "range test, then 3 runs") as advance:
            result = run_explain(name, optimizer, epochs=epochs, seed=seed, workers=workers, on_run=advance)
    except ValueError as e:
        fail(str(e))
    title = f"lrkit explain: {result.task}, {optimizer}"
    console.print(runs_table(result, title, notes=False))
    for r in result.runs:
        console.print(f"lr={r.lr:.3g}: {r.note}", highlight=False, soft_wrap=True)
    paths = write_outputs(result, output, title)
    console.print("wrote " + ", ".join(map(str, paths)))
