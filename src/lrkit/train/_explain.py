"""`explain`: the learning-rate lesson on a task, and `interpret`, one line about a run."""

from __future__ import annotations

import math
import time

import numpy as np

from lrkit._words import counted
from lrkit.tasks import Task
from lrkit.tasks._base import task_epochs
from lrkit.train._compare import (
    Progress,
    _check_optimizers,
    _check_positive_int,
    _check_start_method,
    _execute,
    _FindJob,
    _FitJob,
    _task_ref,
)
from lrkit.train._history import History
from lrkit.train._runs import CompareResult, Run

__all__ = ["explain", "interpret"]


def explain(
    task: str | Task,
    optimizer: str = "adam",
    *,
    epochs: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    on_run: Progress | None = None,
    start_method: str | None = None,
) -> CompareResult:
    """The learning-rate lesson: the suggested LR, ten times smaller and ten times larger.

    The LR range test (`lrkit.finder.find_lr`, target ``"constant"``, verified on the validation
    loader within one training run) suggests an LR; the model is then trained with a constant
    schedule at a tenth of it, at it, and at ten times it, from the same initial weights and batch
    order (`seed`). Each run gets one line of interpretation (`interpret`) computed from its
    history: how far and how fast the loss fell, how noisy it was, whether it diverged, and the
    validation metric against the suggested LR's.

    Args:
        task: a task name, a reference or a `Task`.
        optimizer: a name from the `lrkit.optim` registry.
        epochs: epochs per run, >= 1 (default: the task's).
        seed: seed of the model, the batch order and the range test, >= 0.
        workers: worker processes (default: one per core, at most three); 1 trains here.
        on_run: called with (runs done, runs in all) as training runs finish.
        start_method: how worker processes start, as for `compare`.

    Raises:
        ValueError: unknown task or optimizer, bad `epochs` or `seed`, or a range test that gives
            no suggestion.
    """
    start = time.perf_counter()
    ref, the_task = _task_ref(task)
    (opt,) = _check_optimizers([optimizer])
    n_epochs = _check_positive_int("epochs", task_epochs(the_task) if epochs is None else epochs)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, got seed={seed!r}")
    if workers is not None:
        workers = _check_positive_int("workers", workers)
    _check_start_method(start_method)
    (found,) = _execute([_FindJob(ref, opt, "constant", n_epochs, seed)], 1)
    lr = found["suggestion"]
    if not math.isfinite(lr):
        raise ValueError(
            f"the LR range test gave no suggestion for {opt!r} on {the_task.name!r} "
            f"(status {found['status']!r})"
        )
    lrs = [lr / 10, lr, lr * 10]
    jobs = [_FitJob(ref, opt, "constant", x, n_epochs, seed) for x in lrs]
    hs = [History.from_dict(d) for d in _execute(jobs, workers, on_run, start_method)]
    names = ["0.1x", "suggested", "10x"]
    runs = [
        Run(f"{opt}, lr={x:.3g} ({name})", opt, "constant", x, [h])
        for x, name, h in zip(lrs, names, hs, strict=True)
    ]
    spe = the_task.steps_per_epoch()
    for r in runs:
        r.note = interpret(
            r.histories[0],
            runs[1].histories[0],
            metric=the_task.metric,
            mode=the_task.mode,
            steps_per_epoch=spe,
        )
    return CompareResult(
        task=the_task.name or type(the_task).__name__,
        metric=the_task.metric,
        mode=the_task.mode,
        epochs=n_epochs,
        steps_per_epoch=spe,
        runs=runs,
        suggestions={f"{opt}/constant": lr},
        lr_source="range test",
        seconds=time.perf_counter() - start,
        kind="explain",
    )


#: A loss at least this many times noisier than the reference run's "oscillates".
NOISY = 2.0


def _roughness(losses: np.ndarray) -> float:
    """Typical (median) step-to-step change of the loss over the second half of the run."""
    tail = losses[len(losses) // 2 :]
    tail = tail[np.isfinite(tail)]
    if len(tail) < 3:
        return math.nan
    return float(np.median(np.abs(np.diff(tail))))


def _loss_summary(h: History, steps_per_epoch: int) -> tuple[float, float, float]:
    """(loss at the start, loss in the last epoch, relative fall over the last epoch)."""
    losses = np.asarray(h.losses, dtype=float)
    losses = losses[np.isfinite(losses)]
    if len(losses) == 0:
        return math.nan, math.nan, math.nan
    k = max(1, min(len(losses), steps_per_epoch // 4))
    first = float(np.mean(losses[:k]))
    train = [e.get("train_loss") for e in h.epochs]
    train_f = [float(x) for x in train if x is not None and math.isfinite(float(x))]
    last = train_f[-1] if train_f else float(np.mean(losses[-k:]))
    fall = (train_f[-2] - train_f[-1]) / abs(train_f[-2]) if len(train_f) >= 2 and train_f[-2] else math.nan
    return first, last, fall


#: A run whose last epoch's training loss is this many times its first epoch's has blown up.
BLOWN_UP = 100.0


def interpret(
    history: History,
    reference: History,
    *,
    metric: str = "accuracy",
    mode: str = "max",
    steps_per_epoch: int = 1,
) -> str:
    """One line saying what the loss and the metric of `history` show, measured against `reference`.

    `reference` is the run at the suggested LR (`history` may be the same run). The line names
    what the numbers show: a divergence (the step where the loss stopped being finite), an LR too
    small (the loss still falling at the end and the metric behind the reference's), a loss that
    blew up while it stayed finite (its last epoch's loss `BLOWN_UP` times its first one's), an
    oscillation (step-to-step changes of the loss at least `NOISY` times the reference's), an LR
    too large without oscillation (a loss that does not fall, or a worse metric), or a run that
    trains as well as the reference or better.
    """
    lr = float(history.lrs[0]) if history.lrs else math.nan
    ref_lr = float(reference.lrs[0]) if reference.lrs else math.nan
    n_steps = len(history.losses)
    if history.status == "diverged":
        losses = np.asarray(history.losses, dtype=float)
        bad = np.flatnonzero(~np.isfinite(losses))
        k = int(bad[0]) if len(bad) else n_steps
        planned = max(n_steps, steps_per_epoch * max(1, len(reference.epochs)))
        what = "became non-finite" if len(bad) else "blew up"
        return f"diverged at step {k} of {planned}: the training loss {what} at LR {lr:.3g}"
    m = _final(history)
    m_ref = _final(reference)
    n_ep = len(history.epochs)
    first, last, fall = _loss_summary(history, steps_per_epoch)
    _, ref_last, _ = _loss_summary(reference, steps_per_epoch)
    rough = _roughness(np.asarray(history.losses, dtype=float))
    ref_rough = _roughness(np.asarray(reference.losses, dtype=float))
    ratio = rough / ref_rough if ref_rough > 0 else math.nan
    sign = 1.0 if mode == "max" else -1.0
    tol = 0.005 + 0.01 * abs(m_ref) if math.isfinite(m_ref) else math.inf
    worse = math.isfinite(m) and math.isfinite(m_ref) and sign * (m_ref - m) > tol
    better = math.isfinite(m) and math.isfinite(m_ref) and sign * (m - m_ref) > tol
    val = f"val {metric} {m:.3g} after {counted(n_ep, 'epoch')}"
    against = f"against {m_ref:.3g} at the suggested LR"
    if history is reference or lr == ref_lr:
        return f"suggested: the loss falls from {first:.3g} to {last:.3g}; {val}"
    if lr < ref_lr and (worse or last > 1.05 * ref_last):
        still = f", still falling {fall:.0%} in the last epoch" if math.isfinite(fall) and fall > 0 else ""
        return f"too small: the loss falls slowly, from {first:.3g} to {last:.3g}{still}; {val}, {against}"
    if lr > ref_lr and first > 0 and last > BLOWN_UP * first:
        return (
            f"blew up: the training loss grew from {first:.3g} to {last:.3g} without becoming non-finite "
            f"(diverged in all but name); {val}, {against}"
        )
    if lr > ref_lr and math.isfinite(ratio) and ratio >= NOISY and not better:
        return (
            f"oscillates: the loss jumps by {rough:.2g} from step to step, {ratio:.1f}x as much as at "
            f"the suggested LR, and ends at {last:.3g}; {val}, {against}"
        )
    if lr > ref_lr and worse and last >= 0.9 * first:
        return (
            f"too large: the loss does not fall (it starts at {first:.3g} and ends at {last:.3g}); "
            f"{val}, {against}"
        )
    if lr > ref_lr and (worse or last > 1.05 * ref_last):
        return f"too large: the loss ends at {last:.3g} against {ref_last:.3g}; {val}, {against}"
    if better:
        return f"better than the suggestion here: the loss ends at {last:.3g}; {val}, {against}"
    return f"about as good: the loss falls from {first:.3g} to {last:.3g}; {val}, {against}"


def _final(h: History) -> float:
    m = h.final_metric
    return float(m) if m is not None and math.isfinite(float(m)) else math.nan
