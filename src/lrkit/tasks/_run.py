"""A small, fast training run of a `Task`: for benchmarks and for checking a suggested LR.

One optimizer, one schedule, a fixed number of epochs, no evaluation until the end, and a stop at
the first non-finite loss. The full training loop of lrkit (checkpoints, early stopping, progress)
is `lrkit.train`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from lrkit._checks import positive_or_none
from lrkit._modes import modes_now
from lrkit.adapters.torch import ScheduleLR
from lrkit.optim import make
from lrkit.schedules import Schedule, constant, onecycle, parse
from lrkit.tasks._base import Task, task_epochs

__all__ = ["EVAL_CHUNK", "OPTIMIZERS", "RunResult", "evaluate_split", "make_optimizer", "train"]

Params = Iterable[torch.Tensor] | Iterable[dict[str, object]]


def _registered(name: str) -> Callable[[Params, float], torch.optim.Optimizer]:
    """The `lrkit.optim` registry's optimizer `name`, as a ``(params, lr)`` factory."""

    def build(params: Params, lr: float) -> torch.optim.Optimizer:
        return make(name, params, lr)

    return build


#: The optimizers of the benchmarks by name: plain SGD, SGD with momentum 0.9 (heavy ball), and
#: Adam with torch's defaults, as the `lrkit.optim` registry defines them. Each takes
#: ``(params, lr)``.
OPTIMIZERS: dict[str, Callable[[Params, float], torch.optim.Optimizer]] = {
    name: _registered(name) for name in ("sgd", "momentum", "adam")
}


def make_optimizer(name: str, params: Params, lr: float) -> torch.optim.Optimizer:
    """Build the optimizer `name` (a key of `OPTIMIZERS`) over `params` with learning rate `lr`.

    Raises:
        ValueError: unknown name (the message lists the valid ones), or `lr` not finite and > 0.
    """
    factory = OPTIMIZERS.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (0.0 < lr < math.inf):
        raise ValueError(f"make_optimizer: `lr` must be a finite number > 0, got lr={lr!r}")
    return factory(params, float(lr))


@dataclass
class RunResult:
    """What a `train` run gives.

    Attributes:
        val_metric: the task's metric on the validation split after training; NaN if the run
            diverged or the model's validation outputs are not finite.
        val_loss: the task's loss on the validation split (NaN if diverged).
        test_metric: the metric on the test split (NaN if diverged).
        train_losses: the training loss of every step, before its update (the last one is the
            non-finite loss when the run diverged, or the loss of the step it could not take).
        lrs: the LR of every step (of the first param group), one per entry of `train_losses`.
        diverged: a non-finite training loss stopped the run, or a step too large for the
            parameters' float type (which torch cannot take).
        seconds: wall-clock time of the whole run, evaluation included.
        steps: optimizer steps taken.
    """

    val_metric: float
    val_loss: float
    test_metric: float
    train_losses: list[float] = field(repr=False)
    lrs: list[float] = field(repr=False)
    diverged: bool
    seconds: float
    steps: int


def step_overflowed(error: RuntimeError) -> bool:
    """Whether `error`, raised by ``optimizer.step()``, says that torch could not convert the
    step's size (the LR, or a multiple of it) to the parameters' float type: an LR beyond
    float32's range (about 3.4e38), or near it. Training at such an LR diverges at once."""
    return "cannot be converted to type" in str(error) and "without overflow" in str(error)


def _schedule(schedule: str | Schedule, optimizer: str, lr: float, total: int) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if not isinstance(schedule, str):
        raise TypeError(f"train: `schedule` must be a string or a Schedule, got {type(schedule).__name__}")
    if schedule == "constant":
        return constant(lr)
    if schedule == "onecycle":
        if total < 2:
            raise ValueError(f"train: schedule='onecycle' needs at least 2 steps, the run has {total}")
        momentum = None if optimizer == "sgd" else (0.85, 0.95)
        return onecycle(lr, steps=total, momentum_range=momentum)
    return parse(schedule)


#: Examples per forward pass when a whole split is evaluated.
EVAL_CHUNK = 4096


def evaluate_split(
    task: Task, model: torch.nn.Module, split: str, device: torch.device | str | None = None
) -> tuple[float, float]:
    """(loss, metric) of `model` on a whole split of `task`, in eval mode without gradients.

    The split is moved to `device` (default: where the model's first parameter is, else the CPU)
    in pieces of `EVAL_CHUNK` examples; the model's training mode is restored afterwards. Both
    values are NaN when the outputs are not finite.

    >>> from lrkit.tasks import get
    >>> task = get("logreg-digits")
    >>> loss, accuracy = evaluate_split(task, task.model(0), "val")
    >>> loss > 1.0, 0.0 <= accuracy <= 1.0
    (True, True)
    """
    x, y = task.data().split(split)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    restore_modes = modes_now(model)  # each submodule's (a frozen BatchNorm)
    model.eval()
    try:
        with torch.no_grad():
            chunks = max(1, math.ceil(len(x) / EVAL_CHUNK))
            out = torch.cat([model(xb.to(device)) for xb in torch.tensor_split(x, chunks)])
            y = y.to(device)
            if not bool(torch.isfinite(out).all()):
                return math.nan, math.nan
            return float(task.loss(out, y)), float(task.score(out, y))
    finally:
        restore_modes()


def train(
    task: Task,
    *,
    optimizer: str,
    lr: float,
    schedule: str | Schedule = "constant",
    epochs: int | None = None,
    seed: int = 0,
    model: torch.nn.Module | None = None,
    clip_grad_norm: float | None = None,
) -> RunResult:
    """Train `task` once and score it on the validation and test splits.

    Args:
        task: the task.
        optimizer: a key of `OPTIMIZERS` (``"sgd"``, ``"momentum"``, ``"adam"``).
        lr: the learning rate (finite, > 0): the constant LR, or the peak of ``"onecycle"``.
        schedule: ``"constant"``; ``"onecycle"``: ``onecycle(lr, steps=<all steps of the run>)``
            with its momentum cycle (written to SGD's momentum or Adam's beta1), without one for
            plain ``"sgd"``; or any lrkit schedule or spec, used as it is (`lr` then only
            builds the optimizer).
        epochs: epochs of the run, >= 1 (default: ``task.epochs``).
        seed: seeds the model's initial weights, the batch order and ``torch.manual_seed``.
        model: train this module instead of a fresh ``task.model(seed)`` (it is modified in
            place and left in training mode).
        clip_grad_norm: clip the gradients to this total norm before every step
            (``torch.nn.utils.clip_grad_norm_``); None (the default) does not clip.

    The loss of every step is read before the update; the first non-finite one stops the run with
    ``diverged=True``, and so does a step whose size the parameters' float type cannot hold (an
    LR beyond float32's range, about 3.4e38: torch refuses to take it). At the end the model is
    scored in eval mode under ``torch.no_grad()``.

    The caller chooses the threads (the benchmarks use ``torch.set_num_threads(1)``). A run at a
    far too large LR that does not overflow can be several times slower than a normal one, as
    denormal floats slow the CPU down; ``torch.set_flush_denormal(True)`` avoids that.

    >>> from lrkit.tasks import get
    >>> r = train(get("logreg-digits"), optimizer="adam", lr=1e-2, epochs=2)
    >>> r.steps, r.diverged, r.val_metric > 0.8
    (68, False, True)
    """
    if not isinstance(task, Task):
        raise TypeError(f"train: `task` must be a lrkit Task, got {type(task).__name__}")
    if epochs is None:
        epochs = task_epochs(task, "train: ")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train: `epochs` must be an int >= 1, got epochs={epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"train: `seed` must be an int >= 0, got seed={seed!r}")
    clip_grad_norm = positive_or_none(clip_grad_norm, "clip_grad_norm", "train: ")
    start = time.perf_counter()
    torch.manual_seed(seed)
    net = task.model(seed) if model is None else model
    opt = make_optimizer(optimizer, net.parameters(), lr)
    loader = task.loader(seed, "train")
    total = epochs * len(loader)
    sched = ScheduleLR(opt, _schedule(schedule, optimizer, lr, total))
    group = opt.param_groups[0]

    losses: list[float] = []
    lrs: list[float] = []
    diverged = False
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            lrs.append(float(group["lr"]))
            loss = task.loss(net(x), y)
            value = loss.item()
            losses.append(value)
            if not math.isfinite(value):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad_norm)
            try:
                opt.step()
            except RuntimeError as e:
                if not step_overflowed(e):
                    raise
                diverged = True
                break
            sched.step()
        if diverged:
            break
    steps = len(losses) - (1 if diverged else 0)

    if diverged:
        val_metric = val_loss = test_metric = math.nan
    else:
        val_loss, val_metric = evaluate_split(task, net, "val")
        _, test_metric = evaluate_split(task, net, "test")
    return RunResult(
        val_metric=val_metric,
        val_loss=val_loss,
        test_metric=test_metric,
        train_losses=losses,
        lrs=lrs,
        diverged=diverged,
        seconds=time.perf_counter() - start,
        steps=steps,
    )
