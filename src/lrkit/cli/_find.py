"""``lrkit find``: the LR range test on a built-in task or a user's task."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lrkit._io import figure_bytes, write_atomic
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
    print_warning,
    resolve_device,
    task_name,
)

#: `find_lr`'s arguments that `lrkit find` sets from an option, by the option's name.
FLAGS = {
    "start_lr": "--start-lr",
    "end_lr": "--end-lr",
    "steps": "--steps",
    "seeds": "--seeds",
    "target": "--schedule",
    "clip_grad_norm": "--clip-grad-norm",
}
#: ... and the warnings' advice in the command line's words (`--verify` validates on the task's split).
WARNING_FLAGS = FLAGS | {"val_loader": "--verify"}


def find(
    ref: TaskArgument = None,
    task: TaskOption = None,
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="A registered optimizer: sgd, momentum, adam, adamw, ...")
    ] = "momentum",
    schedule: Annotated[
        str, typer.Option("--schedule", help="What the LR is for: 'constant' or 'onecycle' (its peak).")
    ] = "constant",
    steps: Annotated[int, typer.Option("--steps", help="Sweep length in optimizer steps (>= 20).")] = 80,
    start_lr: Annotated[float, typer.Option("--start-lr", help="First LR of the sweep.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="Last LR of the sweep.")] = 10.0,
    seeds: Annotated[int, typer.Option("--seeds", help="Repeat the sweep over this many seeds.")] = 1,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Train candidate LRs (one training run in all) and pick on validation loss.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the model and the batch order.")] = 0,
    clip_grad_norm: Annotated[
        float | None,
        typer.Option("--clip-grad-norm", help="Clip the gradients to this total norm, as the training does."),
    ] = None,
    device: DeviceOption = "cpu",
    amp: AmpOption = False,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for lr_find.png and lr_find.json.")
    ] = Path("lrkit-find"),
) -> None:
    """Run the LR range test on a task: a table of every rule's suggestion, the curve as PNG, JSON."""
    name = task_name(ref, task, "find")
    refuse_learning_rate_free(optimizer, "find")
    output = output_folder(output)
    import torch

    from lrkit import optim
    from lrkit.finder import find_lr
    from lrkit.finder._checks import verify_steps_for
    from lrkit.finder._result import TARGET_WORDS
    from lrkit.tasks import TaskError, load
    from lrkit.tasks._base import task_epochs

    torch.set_num_threads(1)
    dev = resolve_device(device)
    try:
        the_task = load(name)
        torch.manual_seed(seed)
        model = the_task.model(seed).to(dev)
        opt = optim.make(optimizer, model)
        run_length = task_epochs(the_task, instead=None) * the_task.steps_per_epoch()  # verification's budget
    except (TaskError, ValueError) as e:
        fail(str(e))
    console = make_console()
    columns: list[Any] = [TextColumn("range test"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        job = bar.add_task("sweep", total=steps * seeds)

        def advance(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)

        try:
            with warnings.catch_warnings():  # printed below with the results
                warnings.simplefilter("ignore", UserWarning)
                result = find_lr(
                    model,
                    opt,
                    the_task.loss,
                    the_task.loader(seed),
                    start_lr=start_lr,
                    end_lr=end_lr,
                    steps=steps,
                    target=schedule,
                    seeds=seeds,
                    seed=seed,
                    amp=amp,
                    scaler=torch.amp.GradScaler("cuda") if amp and dev.type == "cuda" else None,
                    clip_grad_norm=clip_grad_norm,
                    verify=verify,
                    val_loader=the_task.loader(seed, split="val") if verify else None,
                    train_steps=run_length,
                    verify_steps=verify_steps_for(run_length),
                    on_step=advance,
                )
        except ValueError as e:
            fail(in_flags(str(e), FLAGS))
    # a heading of its own: a table's title wraps to the width of its two narrow columns
    console.print(f"[bold]LR range test[/bold]: {the_task.name}, {optimizer}, for {TARGET_WORDS[schedule]}")
    table = Table()
    table.add_column("rule")
    table.add_column("suggested LR", justify="right")
    for rule_name, value in result.suggestions.items():
        table.add_row(rule_name, f"{value:.3g}" if math.isfinite(value) else "-")
    console.print(table)
    lo, hi = result.interval
    interval = f"{lo:.3g} .. {hi:.3g}" if math.isfinite(lo) and math.isfinite(hi) else "none"
    console.print(
        f"status: {result.status}; useful interval: {interval}; "
        f"{result.steps} steps in {duration(result.seconds)}"
    )
    if result.seeds:
        console.print(
            f"per seed: {', '.join(f'{v:.3g}' for v in result.seeds.values())} "
            f"(spread {result.spread:.2f} decades)"
        )
    if result.verification is not None:
        v = result.verification
        console.print(
            f"verified on {v.on}: {v.steps} steps each, "
            f"{'trained together' if v.vectorized else 'one after the other'}, {duration(v.seconds)} "
            "(std. error: of the difference from the best; a candidate within it is tied)"
        )
        console.print(_candidates(v))
    for w in result.warnings:
        print_warning(console, w, WARNING_FLAGS)
    console.print(
        f"[bold]suggestion: {result.suggestion:.3g}[/bold] ({_origin(result)})"
        if math.isfinite(result.suggestion)
        else "[bold red]no suggestion[/bold red]"
    )
    png, js = output / "lr_find.png", output / "lr_find.json"
    try:
        output.mkdir(parents=True, exist_ok=True)
        write_atomic({png: figure_bytes(result.plot(), "png", dpi=120), js: result.to_json() + "\n"})
    except ImportError as e:
        fail(str(e), code=1)
    except OSError as e:
        fail(f"cannot write to {output}: {e}", code=1)
    console.print(f"wrote {png} and {js}")


def refuse_learning_rate_free(optimizer: str, command: str) -> None:
    """Exit status 2 when `optimizer` is learning-rate-free (dog, ldog, prodigy), said in the
    command line's words: `lrkit find` and `lrkit explain` rest on the LR range test, which cannot
    read an LR that only multiplies the step the optimizer sets itself. An unknown name is left to
    the command's own error (which lists the valid ones)."""
    from lrkit import optim

    try:
        spec = optim.get(optimizer)
    except ValueError:
        return
    if not spec.learning_rate_free:
        return
    what = "it is the LR range test" if command == "find" else "it trains at the LR range test's suggestion"
    fail(
        f"lrkit {command} cannot use --optimizer {optimizer}: {what}, and {optimizer} sets its own step "
        f"size: its LR only multiplies that step (default {spec.default_lr!r}), and a range test over the "
        "multiplier misleads (a sweep from tiny multipliers keeps the step it estimates tiny, and the "
        f"suggestion may not train at all); train it at its default (lrkit train --optimizer {optimizer}), "
        f"or compare a few multipliers around 1 with lrkit compare --optimizers {optimizer} --lrs 0.5 1 2 "
        f"or lrkit tune --optimizer {optimizer}"
    )


def _candidates(v: Any) -> Table:
    """The verified candidates: score, standard error of the difference from the best, verdict
    (the candidate taken is the smallest tied with the best, or the best)."""
    from lrkit.finder._choice import tied

    table = Table()
    table.add_column("candidate LR", justify="right")
    table.add_column(v.on, justify="right")
    table.add_column("std. error", justify="right")
    table.add_column("")
    errors = v.errors if len(v.errors) == len(v.scores) else [math.nan] * len(v.scores)
    finite = [s for s in v.scores if math.isfinite(s)]
    best = min(finite) if finite else math.nan
    for lr, score, err, tie in zip(v.candidates, v.scores, errors, tied(v.scores, errors), strict=True):
        if not math.isfinite(score):
            verdict = "diverged"
        elif lr == v.best:
            verdict = "taken (tied)" if score > best else "taken (best)"
        elif score == best:
            verdict = "best"
        else:
            verdict = "tied" if tie else ""
        table.add_row(
            f"{lr:.3g}",
            f"{score:.4g}" if math.isfinite(score) else "-",
            f"{err:.2g}" if math.isfinite(err) and err > 0 else "-",
            verdict,
        )
    return table


def _origin(result: Any) -> str:
    """Where the suggestion comes from, in one phrase (it is not always a row of the table)."""
    v = result.verification
    if v is not None and math.isfinite(v.best):
        text = f"{v.best:.3g}, the smallest candidate within one standard error of the best"
        if v.horizon_factor != 1.0:
            ratio = 1.0 / v.horizon_factor**2
            text += f", times sqrt(1/{ratio:.3g}) = {v.horizon_factor:.3g} for a run {ratio:.3g}x longer"
        return text
    if result.status == "flat":
        return "the loss never fell: a guess below where the sweep diverged"
    rule = "lrkit-peak" if result.target == "onecycle" else "lrkit"
    return f"the '{rule}' reading of the curve" + (", median over seeds" if result.seeds else "")
