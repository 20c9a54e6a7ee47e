"""`range_test`: the LR range test on a `Task`, verified on its validation split."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from lrkit.tasks import Task
from lrkit.tasks._base import task_epochs

if TYPE_CHECKING:
    from lrkit.finder import FinderResult

__all__ = ["range_test"]


def range_test(
    task: Task, optimizer: str, target: str = "constant", *, seed: int = 0, epochs: int | None = None
) -> FinderResult:
    """`lrkit.find_lr` on a fresh ``task.model(seed)`` with the registry's `optimizer`.

    The candidates are verified on the task's validation split within the budget of one training
    run of `epochs` epochs (default: ``task.epochs``), for a `target` of ``"constant"`` or
    ``"onecycle"`` (its peak); a run too short to give each of the five candidates 5 steps has
    them train 5 steps each all the same. The finder's warnings are left out; they are in the
    result.

    >>> from lrkit.tasks import get
    >>> r = range_test(get("logreg-digits"), "adam", epochs=2)
    >>> r.verification is not None and r.verification.on == "validation loss", r.suggestion > 0
    (True, True)
    """
    import torch

    from lrkit import optim
    from lrkit.finder import find_lr
    from lrkit.finder._checks import verify_steps_for

    n = task_epochs(task, "range_test: ") if epochs is None else epochs
    total = n * task.steps_per_epoch()
    torch.manual_seed(seed)
    model = task.model(seed)
    opt = optim.make(optimizer, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return find_lr(
            model,
            opt,
            task.loss,
            task.loader(seed),
            target=target,
            seed=seed,
            val_loader=task.loader(seed, split="val"),
            train_steps=total,
            verify_steps=verify_steps_for(total),
        )
