"""Evaluate one configuration: hold-out or k-fold training, reported epoch by epoch for pruning."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lrkit import optim
from lrkit.tasks import Task, TaskData, evaluate_split
from lrkit.train import History, fit
from lrkit.tune._folds import SplitTask, folds
from lrkit.tune._lockstep import Stepper

__all__ = ["RESERVED", "Config", "Outcome", "evaluate", "resolve"]

#: Parameter names with a meaning of their own; any other name is an optimizer option.
RESERVED = ("lr", "optimizer", "schedule", "batch_size")


@dataclass(frozen=True)
class Config:
    """A trial's settings: what `fit` is called with."""

    optimizer: str
    lr: float
    schedule: str
    batch_size: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def resolve(params: Mapping[str, Any], *, optimizer: str, schedule: str) -> Config:
    """The `Config` of a trial's parameters; unset ones take the study's defaults.

    >>> resolve({"lr": 0.01, "weight_decay": 1e-4}, optimizer="adam", schedule="constant")
    Config(optimizer='adam', lr=0.01, schedule='constant', batch_size=None, options={'weight_decay': 0.0001})
    """
    name = str(params.get("optimizer", optimizer))
    lr = params.get("lr")
    return Config(
        optimizer=name,
        lr=float(optim.get(name).default_lr if lr is None else lr),
        schedule=str(params.get("schedule", schedule)),
        batch_size=None if params.get("batch_size") is None else int(params["batch_size"]),
        options={k: v for k, v in params.items() if k not in RESERVED},
    )


@dataclass
class Outcome:
    """What training a configuration gave.

    Attributes:
        value: the mean over folds of the final validation metric (a diverged fold counts with
            the score of its untrained model); NaN when the trial was pruned.
        fold_values: each fold's final metric.
        epochs: epochs trained, summed over folds (the compute the trial cost).
        diverged: folds whose training diverged.
        pruned_at: the epoch after which the trial was pruned, or None.
        histories: each fold's `History` (None for a fold stopped by pruning).
    """

    value: float
    fold_values: list[float]
    epochs: int
    diverged: int
    pruned_at: int | None = None
    histories: list[History | None] = field(default_factory=list)


def _untrained_score(task: Task, seed: int) -> float:
    torch.manual_seed(seed)
    _, metric = evaluate_split(task, task.model(seed), "val", "cpu")
    return metric


def evaluate(
    task: Task,
    config: Config,
    *,
    epochs: int,
    cv: int | None = None,
    seed: int = 0,
    report: Callable[[int, float], bool] | None = None,
) -> Outcome:
    """Train `config` on `task` (its hold-out split, or `cv` folds of train+val) for `epochs` epochs.

    After every epoch the mean validation metric over the folds is passed to ``report(epoch,
    value)``; when it returns True every fold stops and the outcome is marked pruned. Folds run
    in turn, epoch by epoch, on the calling thread's core.

    >>> from lrkit.tasks import get
    >>> out = evaluate(get("logreg-digits"), Config("adam", 1e-2, "constant"), epochs=2, cv=2)
    >>> len(out.fold_values), out.epochs, out.value > 0.8
    (2, 4, True)
    """
    parts: list[TaskData] = [task.data()] if cv is None else folds(task, cv, seed=seed)
    fold_tasks = [
        SplitTask(task, p, batch_size=config.batch_size, tag=f"fold {i}") for i, p in enumerate(parts)
    ]
    floors = [_untrained_score(t, seed) for t in fold_tasks]

    def job(t: Task) -> Callable[[Callable[[Any], None]], History]:
        def run(pause: Callable[[Any], None]) -> History:
            torch.manual_seed(seed)
            model = t.model(seed)
            opt = optim.make(config.optimizer, model, config.lr, **config.options)
            return fit(
                t, opt, config.schedule, epochs, lr=config.lr, seed=seed, model=model, progress=False,
                on_epoch=lambda h: pause(h.epochs[-1]["val_metric"]),
            )  # fmt: skip

        return run

    steppers = [Stepper(job(t)) for t in fold_tasks]
    trained = [0] * len(steppers)
    pruned_at: int | None = None
    try:
        for epoch in range(1, epochs + 1):
            values = []
            for i, s in enumerate(steppers):
                if not s.done:
                    s.resume()
                if s.done:  # diverged (fit returns early), or finished after the last epoch
                    history: History = s.result
                    trained[i] = len(history.epochs)
                    values.append(floors[i] if history.status == "diverged" else history.final_metric)
                else:
                    trained[i] = epoch
                    values.append(float(s.value))
            if report is not None and report(epoch, sum(values) / len(values)):
                pruned_at = epoch
                break
        if pruned_at is None:
            for s in steppers:
                s.resume()  # let fit finish: final scoring
    finally:
        for s in steppers:
            s.stop()

    histories: list[History | None] = [s.result if isinstance(s.result, History) else None for s in steppers]
    if pruned_at is not None:
        return Outcome(math.nan, [], sum(trained), 0, pruned_at, histories)
    fold_values = []
    diverged = 0
    for floor, h in zip(floors, histories, strict=True):
        assert h is not None  # every fold ran to its end
        if h.status == "diverged" or not math.isfinite(h.final_metric):
            diverged += 1
            fold_values.append(floor)
        else:
            fold_values.append(h.final_metric)
    return Outcome(sum(fold_values) / len(fold_values), fold_values, sum(trained), diverged, None, histories)
