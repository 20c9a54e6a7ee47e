"""`fit`: train a `Task` with a named optimizer and an lrkit schedule, with validation every
epoch, reduce-on-plateau, early stopping, checkpoints that resume bit for bit, and a progress bar.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lrkit._checks import positive_or_none, writable_folder
from lrkit._io import remove_temporaries
from lrkit.adapters.torch import ScheduleLR
from lrkit.optim import make
from lrkit.schedules import Schedule, from_config
from lrkit.tasks import BatchLoader, Task, evaluate_split
from lrkit.tasks._base import task_epochs
from lrkit.tasks._run import step_overflowed
from lrkit.train._checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from lrkit.train._early import EarlyStopping
from lrkit.train._history import History
from lrkit.train._schedule import KEYWORD_SCHEDULES, build_schedule, check_fit, momentum_of, read_number

__all__ = ["fit"]


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


class _Progress:
    """A rich progress bar over all steps of the run (loss, LR, ETA), or nothing."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self._bar: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._id = self._bar.add_task("train", total=total, completed=done, loss="-", lr="-")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def step(self, description: str, loss: float, lr: float) -> None:
        if self._bar is not None:
            self._bar.update(self._id, advance=1, description=description, loss=f"{loss:.4g}", lr=f"{lr:.3g}")


def _check_args(
    task: Any,
    optimizer: Any,
    schedule: Any,
    epochs: Any,
    lr: Any,
    seed: Any,
    model: Any,
    early_stopping: Any,
    checkpoint_dir: Any,
    resume: Any,
    amp: Any,
    progress: Any,
    on_epoch: Any,
) -> None:
    if not isinstance(task, Task):
        raise TypeError(f"fit: `task` must be a lrkit Task, got {type(task).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"fit: `epochs` must be an int >= 1 (or None for task.epochs), got epochs={epochs!r}"
        )
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf):
        raise ValueError(f"fit: `lr` must be a finite number > 0 or None, got lr={lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"fit: `seed` must be an int >= 0, got seed={seed!r}")
    if model is not None and not isinstance(model, torch.nn.Module):
        raise TypeError(f"fit: `model` must be a torch.nn.Module or None, got {type(model).__name__}")
    if isinstance(optimizer, torch.optim.Optimizer):
        if model is None:
            raise ValueError(
                "fit: a ready `optimizer` needs the `model` whose parameters it holds; pass model=, "
                "or name a registered optimizer (lrkit.optim.names())"
            )
    elif not isinstance(optimizer, str):
        raise TypeError(
            f"fit: `optimizer` must be a registered name or a torch.optim.Optimizer, "
            f"got {type(optimizer).__name__}"
        )
    if not isinstance(schedule, (str, Schedule)):
        raise TypeError(f"fit: `schedule` must be a spec string or a Schedule, got {type(schedule).__name__}")
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            f"fit: `early_stopping` must be an EarlyStopping or None, got {type(early_stopping).__name__}"
        )
    if not isinstance(resume, bool):
        raise ValueError(f"fit: `resume` must be True or False, got resume={resume!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("fit: resume=True needs `checkpoint_dir`, the folder holding last.pt")
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, Path)):
        raise TypeError(f"fit: `checkpoint_dir` must be a path or None, got {type(checkpoint_dir).__name__}")
    if not isinstance(amp, bool):
        raise ValueError(f"fit: `amp` must be True or False, got amp={amp!r}")
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"fit: `progress` must be True, False or None (auto), got progress={progress!r}")
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"fit: `on_epoch` must be callable or None, got {type(on_epoch).__name__}")


def fit(
    task: Task,
    optimizer: str | torch.optim.Optimizer = "adam",
    schedule: str | Schedule = "constant",
    epochs: int | None = None,
    *,
    lr: float | None = None,
    seed: int = 0,
    model: torch.nn.Module | None = None,
    early_stopping: EarlyStopping | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    amp: bool = False,
    clip_grad_norm: float | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[History], None] | None = None,
) -> History:
    """Train `task` and return its `History`.

    Every epoch trains on the whole training split (batch order drawn from ``(seed, epoch)``),
    then evaluates the loss and the task's metric on the whole validation split, in eval mode under
    ``torch.no_grad()``. At the end the final weights (or the best ones, restored by early
    stopping) are scored once on the test split.

    Args:
        task: the task (`lrkit.tasks.get` gives a built-in one).
        optimizer: a registered name (`lrkit.optim.names`), built over the model with `lr`, or a
            ready ``torch.optim.Optimizer`` (then `model` must be the module it optimizes).
        schedule: ``"constant"``: ``constant(lr)``; ``"step"``: `lr` divided by 10 at half and
            again at three quarters of the steps; ``"cosine"``: ``cosine(lr, steps=<all steps>)``
            down to 0; ``"onecycle"``: ``onecycle(lr, steps=<all steps>)`` with its momentum cycle
            (SGD's momentum or Adam's beta1) where the optimizer has momentum,
            ``momentum_range=none`` where it has none; or any lrkit `Schedule` or
            spec string, used as it is (`lr` then only builds the optimizer) and checked against
            the run's length first (`lrkit.schedules.lint`: what it finds is a warning). A
            schedule with a `plateau` node is told the validation loss after every epoch.
        epochs: epochs of the whole run, >= 1 (default: ``task.epochs``, checked likewise).
        lr: the learning rate, finite and > 0; None: the registry's default for a named optimizer,
            the optimizer's own LR for a ready one.
        seed: seeds the model's initial weights, the batch order and ``torch.manual_seed``.
        model: train this module (modified in place) instead of a fresh ``task.model(seed)``.
        early_stopping: stop after `EarlyStopping.patience` epochs without improvement of its
            monitored value, and (``restore_best``) end with the best epoch's weights.
        checkpoint_dir: a folder for ``last.pt`` (after every epoch) and ``best.pt`` (after every
            epoch that improves the monitored value: early stopping's if given, else the task's
            metric). Both are written atomically (``best.pt`` first) and never from a diverged
            state; temporary files of theirs that a killed run left there are removed at the start.
        resume: continue from ``checkpoint_dir/last.pt`` when it exists (start afresh when it
            does not): finished epochs are skipped, and the model, optimizer, schedule, early
            stopping, history and RNG states are restored, so on the CPU the run reproduces the
            uninterrupted one bit for bit (on CUDA too, with and without `amp`, where the model's
            kernels are deterministic: see ``torch.use_deterministic_algorithms``). The run must
            have the same task, optimizer, schedule and seed (a keyword schedule is built from
            `lr` and the run's length: to resume with more epochs, pass the saved schedule's spec,
            which the refusal gives).
        device: where the model and batches go (``"cpu"``, ``"cuda"``, ...).
        amp: mixed precision: autocast to bfloat16 on the CPU, to float16 with a `GradScaler` on
            CUDA (a step the scaler skips does not advance the schedule).
        clip_grad_norm: clip the gradients to this total norm before every step
            (``torch.nn.utils.clip_grad_norm_``, on unscaled gradients under AMP); None does not
            clip. A resumed run must clip as the interrupted one did (checked).
        progress: show a progress bar (loss, LR, ETA) on stderr; None: only on a terminal.
        on_epoch: called with the history after every epoch (and its checkpoint); an exception
            it raises stops the run and propagates.

    A non-finite training loss (or validation loss) stops the run with ``status="diverged"``
    instead of raising, and so does a step whose size the parameters' float type cannot hold (an
    LR beyond float32's range, about 3.4e38: torch refuses to take it).

    Raises:
        ValueError: a bad argument (named in the message), an unknown optimizer or schedule, a
            schedule that would raise past its ``after="error"`` horizon during the run, or a
            checkpoint that does not belong to this run.
        CheckpointError: ``last.pt`` is unreadable or not an lrkit checkpoint, or was written by
            another run (the message says which setting differs and what to do).
        TaskError: `epochs` is None and ``task.epochs`` is not an int >= 1, or the task's
            ``batch_size`` is not.

    >>> from lrkit.tasks import get
    >>> h = fit(get("logreg-digits"), "momentum", "onecycle", epochs=2, lr=0.05)
    >>> h.status, len(h.epochs), h.steps, h.final_metric > 0.8
    ('completed', 2, 68, True)
    """
    if epochs is None and isinstance(task, Task):
        epochs = task_epochs(task, "fit: ")
    _check_args(
        task, optimizer, schedule, epochs, lr, seed, model, early_stopping, checkpoint_dir, resume, amp,
        progress, on_epoch,
    )  # fmt: skip
    clip_grad_norm = positive_or_none(clip_grad_norm, "clip_grad_norm", "fit: ")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"fit: `device` must name a torch device, got device={device!r} ({e})") from None
    if amp and dev.type not in ("cpu", "cuda"):
        raise ValueError(f"fit: amp=True supports the 'cpu' and 'cuda' devices, got device={device!r}")
    if checkpoint_dir is not None:
        writable_folder(checkpoint_dir, "checkpoint_dir", "fit: ")
        for name in ("last.pt", "best.pt"):  # left by a run killed mid-write; never a valid file
            remove_temporaries(checkpoint_dir, name)
    start = time.perf_counter()

    torch.manual_seed(seed)
    net = task.model(seed) if model is None else model
    net.to(dev)
    if isinstance(optimizer, torch.optim.Optimizer):
        opt, opt_name = optimizer, type(optimizer).__name__
    else:
        opt, opt_name = make(optimizer, net, lr), optimizer
    base_lr = float(lr) if lr is not None else read_number(opt.defaults["lr"])
    loader = task.loader(seed, "train")
    per_epoch = len(loader)
    sched = build_schedule(schedule, opt, base_lr, epochs * per_epoch)
    if not (isinstance(schedule, str) and schedule in KEYWORD_SCHEDULES):
        check_fit(sched, epochs * per_epoch)
    scheduler = ScheduleLR(opt, sched)
    scaler = torch.amp.GradScaler("cuda") if amp and dev.type == "cuda" else None
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(dev.type, dtype=amp_dtype) if amp else contextlib.nullcontext()

    history = History(
        task=task.name or type(task).__name__,
        optimizer=opt_name,
        schedule=str(sched),
        seed=seed,
        metric=task.metric,
        mode=task.mode,
    )
    es = early_stopping
    if es is not None:
        es.reset()
        es.resolve(task.mode)
    best_state: dict[str, torch.Tensor] | None = None
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    first_epoch = 0
    earlier_seconds = 0.0

    try:
        if resume and folder is not None and (folder / "last.pt").exists():
            ck = _resume(
                folder / "last.pt", history, net, opt, scheduler, es, scaler, epochs, clip_grad_norm, schedule
            )
            history = History.from_dict(ck["history"])
            best_state = ck.get("best_model")
            first_epoch = int(ck["epoch"])
            earlier_seconds = history.seconds
            set_rng_state(ck["rng"])

        net.train()
        group = opt.param_groups[0]
        # LR-free optimizers and K-FAC report the step size they actually took
        effective_lr = getattr(opt, "effective_lr", None)
        with _Progress(
            sys.stderr.isatty() if progress is None else progress, epochs * per_epoch, first_epoch * per_epoch
        ) as bar:
            for index in range(first_epoch, epochs):
                if history.status != "completed":  # a resumed run that had already stopped
                    break
                epoch = index + 1
                t0 = time.perf_counter()
                if isinstance(loader, BatchLoader):
                    loader.epoch = index  # the permutation depends on (seed, epoch) only
                losses: list[float] = []
                for x, y in loader:
                    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                    history.lrs.append(read_number(group["lr"]))
                    history.momenta.append(momentum_of(group))
                    with autocast():
                        loss = task.loss(net(x), y)
                    value = float(loss.detach().float().item())
                    history.losses.append(value)
                    if not math.isfinite(value):
                        history.status = "diverged"
                        break
                    losses.append(value)
                    opt.zero_grad(set_to_none=True)
                    try:
                        if scaler is not None:
                            scaler.scale(loss).backward()
                            if clip_grad_norm is not None:
                                scaler.unscale_(opt)
                                torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad_norm)
                            scaler.step(opt)
                            scaler.update()
                        else:
                            loss.backward()
                            if clip_grad_norm is not None:
                                torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad_norm)
                            opt.step()
                    except RuntimeError as e:
                        if not step_overflowed(e):  # a step the parameters' float type cannot hold
                            raise
                        history.status = "diverged"
                        break
                    if callable(effective_lr):
                        history.lrs[-1] = float(effective_lr())
                    scheduler.step()
                    bar.step(f"epoch {epoch}/{epochs}", value, history.lrs[-1])
                if history.status == "diverged":
                    break
                val_loss, val_metric = evaluate_split(task, net, "val", dev)
                history.add_epoch(
                    train_loss=sum(losses) / len(losses),
                    val_loss=val_loss,
                    val_metric=val_metric,
                    lr=history.lrs[-1],
                    seconds=time.perf_counter() - t0,
                )
                history.seconds = earlier_seconds + time.perf_counter() - start
                if not math.isfinite(val_loss):
                    history.status = "diverged"
                    break
                if scheduler.schedule.has_plateau:
                    scheduler.report(val_loss)
                if es is not None:
                    improved = es.update(epoch, val_loss if es.monitor == "val_loss" else val_metric)
                    if improved and es.restore_best:
                        best_state = _cpu_copy(net.state_dict())
                    if es.should_stop:
                        history.status = "early-stopped"
                else:
                    improved = history.best_epoch == epoch
                if folder is not None:
                    payload = {
                        "epoch": epoch,
                        "step": scheduler.last_epoch,
                        "model": net.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "history": history.to_dict(),
                        "early_stopping": None if es is None else es.state_dict(),
                        "best_model": best_state if es is not None and es.restore_best else None,
                        "scaler": None if scaler is None else scaler.state_dict(),
                        "clip_grad_norm": clip_grad_norm,
                        "rng": rng_state(),
                    }
                    # best.pt first: a run stopped between the two resumes from the earlier
                    # last.pt and redoes this epoch, writing both again
                    if improved:
                        save_checkpoint(folder / "best.pt", payload)
                    save_checkpoint(folder / "last.pt", payload)
                if on_epoch is not None:
                    on_epoch(history)
    finally:
        scheduler.close()

    if es is not None and es.restore_best and best_state is not None:
        net.load_state_dict(best_state)
        history.restored_epoch = es.best_epoch
        _, history.final_metric = evaluate_split(task, net, "val", dev)
        _, history.test_metric = evaluate_split(task, net, "test", dev)
    elif history.status == "diverged" or not history.epochs:
        history.final_metric = history.test_metric = math.nan
    else:
        history.final_metric = history.epochs[-1]["val_metric"]
        _, history.test_metric = evaluate_split(task, net, "test", dev)
    net.train()
    history.seconds = earlier_seconds + time.perf_counter() - start
    return history


def _resume(
    path: Path,
    fresh: History,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: ScheduleLR,
    es: EarlyStopping | None,
    scaler: torch.amp.GradScaler | None,
    epochs: int,
    clip_grad_norm: float | None,
    schedule: str | Schedule,
) -> dict[str, Any]:
    """Load `path` into the run's objects after checking that it belongs to this run."""
    ck = load_checkpoint(path)
    saved = ck["history"]
    for key in ("task", "optimizer", "seed"):
        if saved.get(key) != getattr(fresh, key):
            raise CheckpointError(
                f"{path}: the checkpoint was written by a run with {key}={saved.get(key)!r}, "
                f"this run has {key}={getattr(fresh, key)!r}"
            )
    if ck["epoch"] > epochs:
        raise ValueError(
            f"fit: the checkpoint {path} has {ck['epoch']} epochs done, more than epochs={epochs}"
        )
    if (es is None) != (ck.get("early_stopping") is None):
        raise CheckpointError(
            f"{path}: the checkpoint was written "
            f"{'with' if es is None else 'without'} early stopping; resume with the same setting"
        )
    # checkpoints written before fit could clip do not say; they are not checked
    if "clip_grad_norm" in ck and ck["clip_grad_norm"] != clip_grad_norm:
        raise CheckpointError(
            f"{path}: the checkpoint was written by a run with clip_grad_norm={ck['clip_grad_norm']!r}, "
            f"this run has clip_grad_norm={clip_grad_norm!r}; resume with the same setting"
        )
    # checked here, in fit's words (ScheduleLR's own check offers options that fit does not have)
    saved_schedule = _saved_schedule(ck["scheduler"])
    if saved_schedule is not None and saved_schedule != scheduler.schedule.fresh():
        built = ""
        if isinstance(schedule, str) and schedule in KEYWORD_SCHEDULES:
            built = f" (schedule={schedule!r} is built from `lr` and the run's length)"
        raise CheckpointError(
            f"{path}: the checkpoint was written by a run with the schedule {saved_schedule}, this run "
            f"has the schedule {scheduler.schedule.fresh()}{built}; to continue the saved run, pass its "
            f"spec as schedule={str(saved_schedule)!r}, or start afresh with resume=False or another "
            "`checkpoint_dir`"
        )
    try:
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        if es is not None:
            es.load_state_dict(ck["early_stopping"])
        if scaler is not None and ck.get("scaler") is not None:
            scaler.load_state_dict(ck["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot resume this run from it: {e}") from None
    return ck


def _saved_schedule(state: dict[str, Any]) -> Schedule | None:
    """The schedule of a checkpoint's scheduler state (as new), or None when it cannot be read
    (then ``ScheduleLR.load_state_dict`` says why)."""
    try:
        return from_config(state["schedule"]).fresh()
    except (KeyError, TypeError, AttributeError, ValueError):  # ScheduleError is a ValueError
        return None
