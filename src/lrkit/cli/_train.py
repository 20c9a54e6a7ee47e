"""``lrkit train``: one training run of a task, its per-epoch table, history and curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lrkit._io import write_atomic
from lrkit.cli._common import (
    AmpOption,
    DeviceOption,
    TaskArgument,
    TaskOption,
    duration,
    fail,
    in_flags,
    make_console,
    output_folder,
    resolve_device,
    task_name,
    warnings_printed,
)

#: `fit`'s arguments that `lrkit train` sets from an option, by the option's name.
FLAGS = {"clip_grad_norm": "--clip-grad-norm", "epochs": "--epochs"}


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else "-"


def train(
    ref: TaskArgument = None,
    task: TaskOption = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="An optimizer name.")] = "adam",
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule",
            help="'constant' or 'onecycle' (built from the LR and the run's length) or any spec, "
            "e.g. 'warmup(50) >> cosine(0.01, steps=300)'.",
        ),
    ] = "constant",
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Epochs (default: the task's).", min=1)
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="The LR (default: the optimizer's default LR).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the model and the batch order.", min=0)] = 0,
    device: DeviceOption = "cpu",
    amp: AmpOption = False,
    clip_grad_norm: Annotated[
        float | None,
        typer.Option("--clip-grad-norm", help="Clip the gradients to this total norm before every step."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for history.json and curves.png.")
    ] = Path("lrkit-train"),
) -> None:
    """Train a task once: a table per epoch, the history as JSON and the curves as PNG."""
    import torch

    from lrkit import optim
    from lrkit.tasks import TaskError, load
    from lrkit.tasks._base import task_epochs
    from lrkit.train import KEYWORD_SCHEDULES, CompareResult
    from lrkit.train._fit import fit

    try:
        the_task = load(task_name(ref, task, "train"))
        if epochs is None:  # said here: fit's words for it would read as --epochs in FLAGS
            task_epochs(the_task, instead="pass --epochs")
        output = output_folder(output)
    except TaskError as e:
        fail(str(e))
    if optimizer not in optim.names():
        fail(f"unknown optimizer {optimizer!r}; valid names: {', '.join(optim.names())}")
    if schedule.strip() not in KEYWORD_SCHEDULES:
        from lrkit.schedules import ScheduleError, parse

        try:
            parse(schedule)
        except ScheduleError as e:
            fail(str(e))
    if lr is not None and not (0.0 < lr < math.inf):
        fail(f"--lr must be a finite number > 0, got {lr}")
    torch.set_num_threads(1)
    dev = resolve_device(device)
    if amp and dev.type not in ("cpu", "cuda"):
        fail(f"--amp supports the 'cpu' and 'cuda' devices, got --device {device!r}")
    console = make_console()
    try:
        with warnings_printed(console, FLAGS):
            history = fit(
                the_task, optimizer, schedule.strip(), epochs, lr=lr, seed=seed, device=dev, amp=amp,
                clip_grad_norm=clip_grad_norm,
            )  # fmt: skip
    except ValueError as e:
        fail(in_flags(str(e).removeprefix("fit: "), FLAGS))

    table = Table(title=f"lrkit train: {the_task.name}, {optimizer}, {schedule}")
    for name in ("epoch", "train loss", "val loss", f"val {the_task.metric}", "lr", "seconds"):
        table.add_column(name, justify="right")
    for row in history.epochs:
        table.add_row(
            str(int(row["epoch"])),
            _fmt(row["train_loss"]),
            _fmt(row["val_loss"]),
            _fmt(row["val_metric"]),
            f"{row['lr']:.3g}",
            f"{row['seconds']:.2f}",
        )
    console.print(table)
    console.print(
        f"status: {history.status}; best val {the_task.metric} {_fmt(history.best_metric)} "
        f"(epoch {history.best_epoch}); final {_fmt(history.final_metric)}; "
        f"test {_fmt(history.test_metric)}; {history.steps} steps in {duration(history.seconds)}",
        highlight=False,
    )
    from lrkit.plot import plot_training
    from lrkit.report._html import _png

    result = CompareResult.from_histories(the_task, [history], epochs=len(history.epochs))
    js, png = output / "history.json", output / "curves.png"
    try:
        output.mkdir(parents=True, exist_ok=True)
        curves = _png(plot_training(result))
        write_atomic({js: json.dumps(history.to_dict(), indent=1), png: curves})
    except ImportError as e:
        fail(str(e), code=1)
    except OSError as e:
        fail(f"cannot write to {output}: {e}", code=1)
    console.print(f"wrote {js} and {png}")
