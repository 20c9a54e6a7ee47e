"""The schedule of a `fit` run: built from a keyword to the run's LR and length, or taken as
given and checked against the run first (`check_fit`), with what the check says shown once per
schedule however many runs give it (`schedule_warnings_once`)."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from lrkit.schedules import Schedule, constant, cosine, lint, multistep, onecycle, parse

__all__ = [
    "KEYWORD_SCHEDULES",
    "ScheduleFitWarning",
    "build_schedule",
    "check_fit",
    "has_momentum",
    "momentum_of",
    "read_number",
    "schedule_warnings_once",
]


def read_number(value: Any) -> float:
    """A number a param group holds, as a float (a tensor LR or momentum included)."""
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def momentum_of(group: dict[str, Any]) -> float:
    """A param group's momentum (``betas[0]`` for Adam-style optimizers); NaN when it has none."""
    if "betas" in group:
        return read_number(group["betas"][0])
    m = group.get("momentum")
    if m is None:
        return math.nan
    m = read_number(m)
    return m if m != 0.0 else math.nan


def has_momentum(opt: torch.optim.Optimizer) -> bool:
    return not math.isnan(momentum_of(opt.param_groups[0]))


#: Schedule specs that `fit` builds from the run's LR and length; any other spec is used as given.
KEYWORD_SCHEDULES = ("constant", "step", "cosine", "onecycle")


class ScheduleFitWarning(UserWarning):
    """A schedule given as it is does not fit the run it is given for (`check_fit`): a decay
    that ends early or never finishes, a jump, an LR of 0 at step 0."""


def check_fit(schedule: Schedule, total: int, where: str = "fit") -> None:
    """A schedule given as it is, checked against the run's length before it starts: what
    `lint` finds is a warning (a decay that ends early, one that never finishes, a jump), and a
    schedule that would raise past its ``after="error"`` horizon is refused now, not mid-run.
    Messages begin with `where` (the caller's name)."""
    for finding in lint(schedule, total):
        if finding.code == "past-end":
            raise ValueError(
                f"{where}: schedule {schedule} ends at step {(finding.step or 1) - 1} with after='error', "
                f"but the run has {total} steps (0 to {total - 1}): lengthen it, or use after='hold'"
            )
        warnings.warn(f"{where}: schedule {schedule}: {finding}", ScheduleFitWarning, stacklevel=3)


@contextlib.contextmanager
def schedule_warnings_once() -> Iterator[None]:
    """Within the block, each of `check_fit`'s warnings is shown once, however many runs give it
    (the trials of a study, say); other warnings pass as they are."""
    seen: set[str] = set()
    show = warnings.showwarning

    def once(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:  # fmt: skip
        if issubclass(category, ScheduleFitWarning):
            if str(message) in seen:
                return
            seen.add(str(message))
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = once
    try:
        yield
    finally:
        warnings.showwarning = show


def build_schedule(schedule: str | Schedule, opt: torch.optim.Optimizer, lr: float, total: int) -> Schedule:
    """The run's schedule: a `Schedule` as it is, a keyword shape scaled to `lr` and `total`, or a spec."""
    if isinstance(schedule, Schedule):
        return schedule
    if schedule == "constant":
        return constant(lr)
    if schedule == "step":
        milestones = tuple(sorted({max(1, total // 2), max(2, (3 * total) // 4)}))
        return multistep(lr, milestones=milestones, factor=0.1)
    if schedule == "cosine":
        return cosine(lr, steps=max(1, total), end=0.0)
    if schedule == "onecycle":
        if total < 2:
            raise ValueError(f"fit: schedule='onecycle' needs at least 2 steps, the run has {total}")
        momentum = (0.85, 0.95) if has_momentum(opt) else None
        return onecycle(lr, steps=total, momentum_range=momentum)
    return parse(schedule)
