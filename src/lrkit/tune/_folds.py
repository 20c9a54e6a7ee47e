"""Cross-validation folds of a task, and a task with replaced splits.

Tuning never looks at a task's test split: the folds are drawn from its train and validation
splits pooled together, and the final refit trains on that pool before scoring the test split once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lrkit.tasks import Task, TaskData

__all__ = ["SplitTask", "folds", "is_classification", "pooled"]


class SplitTask(Task):
    """`base` with other splits (and optionally another batch size); model, loss and score are its own."""

    def __init__(self, base: Task, data: TaskData, *, batch_size: int | None = None, tag: str = "") -> None:
        self.base = base
        self._data = data
        self.name = base.name
        self.metric = base.metric
        self.mode = base.mode
        self.epochs = base.epochs
        self.batch_size = base.batch_size if batch_size is None else batch_size
        self.description = base.description
        self.tag = tag

    def data(self) -> TaskData:
        return self._data

    def model(self, seed: int) -> torch.nn.Module:
        return self.base.model(seed)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.base.loss(output, target)

    def score(self, output: torch.Tensor, target: torch.Tensor) -> float:
        return self.base.score(output, target)

    def __repr__(self) -> str:
        return f"SplitTask({self.base!r}{', ' + self.tag if self.tag else ''})"


def is_classification(y: torch.Tensor) -> bool:
    """Whether targets are class labels (a 1-D integer tensor), so folds are stratified."""
    return y.dim() == 1 and not torch.is_floating_point(y) and not torch.is_complex(y)


def pooled(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's train and validation splits as one ``(x, y)``."""
    data = task.data()
    (xt, yt), (xv, yv) = data.train, data.val
    return torch.cat([xt, xv]), torch.cat([yt, yv])


def folds(task: Task, k: int, *, seed: int = 0) -> list[TaskData]:
    """`k` splits of the pooled train+val data: each fold validates on one part, trains on the rest.

    Folds are stratified by class for classification targets, shuffled with `seed`; every fold
    keeps the task's own test split (which tuning never scores).

    >>> from lrkit.tasks import get
    >>> parts = folds(get("logreg-digits"), 3)
    >>> [len(p.val[0]) for p in parts], len(parts[0].train[0]) + len(parts[0].val[0])
    ([479, 479, 479], 1437)
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"`cv` must be an int >= 2 (folds), got cv={k!r}")
    from sklearn.model_selection import KFold, StratifiedKFold

    x, y = pooled(task)
    n = len(x)
    if k > n:
        raise ValueError(f"`cv` must be at most the {n} training examples, got cv={k}")
    index = np.arange(n)
    splitter: Any
    if is_classification(y):
        counts = np.bincount(y.numpy())
        smallest = int(counts[counts > 0].min())
        if k > smallest:
            raise ValueError(
                f"`cv` must be at most {smallest}, the size of the smallest class, for stratified "
                f"folds; got cv={k}"
            )
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(index, y.numpy())
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed).split(index)
    test = task.data().test
    out = []
    for train_idx, val_idx in splitter:
        tr, va = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
        out.append(TaskData(train=(x[tr], y[tr]), val=(x[va], y[va]), test=test))
    return out
