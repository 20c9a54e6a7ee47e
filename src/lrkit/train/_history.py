"""`History`: what a training run recorded, per step and per epoch, as JSON-safe data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HISTORY_FORMAT", "STATUSES", "History"]

#: Identifies the layout of `History.to_dict()`.
HISTORY_FORMAT = "lrkit.History/1"

#: The values of `History.status`.
STATUSES = ("completed", "diverged", "early-stopped")

_EPOCH_KEYS = ("epoch", "train_loss", "val_loss", "val_metric", "lr", "seconds")


def _out(x: float) -> float | None:
    """A float for JSON: non-finite values become None."""
    return float(x) if math.isfinite(x) else None


def _in(x: Any) -> float:
    """A float from JSON: None becomes NaN."""
    return math.nan if x is None else float(x)


@dataclass
class History:
    """The record of one training run (`lrkit.train.fit`).

    Per optimizer step (in step order, resumed runs included):

    Attributes:
        lrs: the LR of the first param group at the step; for an optimizer with
            ``effective_lr()`` (the learning-rate-free ones and K-FAC in `lrkit.optim`, whose
            ``lr`` is a multiplier or is scaled by KL clipping), the step size it reports having
            taken in that step.
        momenta: its momentum (SGD's ``momentum``, or ``betas[0]`` for Adam-style optimizers);
            NaN where the optimizer has none.
        losses: the training loss of the minibatch, before the update. When the run diverged the
            last entry is the non-finite loss that stopped it, or the loss of the step that the
            parameters' float type could not take.

    Per epoch:

    Attributes:
        epochs: one dict per finished epoch: ``epoch`` (1 for the first), ``train_loss`` (the
            mean over its steps), ``val_loss`` and ``val_metric`` (the whole validation split
            after the epoch), ``lr`` (the LR of its last step) and ``seconds``.

    Summary:

    Attributes:
        status: ``"completed"``, ``"diverged"`` (a non-finite loss stopped the run, or a step
            too large for the parameters' float type) or ``"early-stopped"``.
        best_epoch: the epoch with the best ``val_metric`` by `mode` (None before any epoch).
        best_metric: that epoch's ``val_metric`` (NaN when none).
        final_metric: ``val_metric`` of the weights the run ends with: the last epoch's, or the
            restored best epoch's (NaN after a divergence without restored weights).
        test_metric: the metric on the test split of those weights, scored once at the end.
        restored_epoch: the epoch whose weights early stopping restored at the end, else None.
        seconds: wall-clock time of the run (all of its parts when it was resumed).
        task, optimizer, schedule, seed: what ran (`schedule` is its spec text).
        metric, mode: the task's metric name and whether it is minimized or maximized.

    `to_dict` gives JSON-safe data (non-finite floats become None) and `from_dict` reads it back.

    >>> h = History(task="t", optimizer="adam", schedule="constant(0.001)", seed=0)
    >>> h.add_epoch(train_loss=1.0, val_loss=0.9, val_metric=0.5, lr=1e-3, seconds=0.1)
    >>> h.best_epoch, h.best_metric
    (1, 0.5)
    >>> History.from_dict(h.to_dict()).to_dict() == h.to_dict()
    True
    """

    task: str
    optimizer: str
    schedule: str
    seed: int
    metric: str = "accuracy"
    mode: str = "max"
    lrs: list[float] = field(default_factory=list, repr=False)
    momenta: list[float] = field(default_factory=list, repr=False)
    losses: list[float] = field(default_factory=list, repr=False)
    epochs: list[dict[str, float]] = field(default_factory=list, repr=False)
    status: str = "completed"
    best_epoch: int | None = None
    best_metric: float = math.nan
    final_metric: float = math.nan
    test_metric: float = math.nan
    restored_epoch: int | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"History: `status` must be one of {STATUSES}, got status={self.status!r}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"History: `mode` must be 'min' or 'max', got mode={self.mode!r}")

    @property
    def steps(self) -> int:
        """Optimizer steps recorded (a diverging step included)."""
        return len(self.losses)

    def column(self, key: str) -> list[float]:
        """One per-epoch value for every epoch, e.g. ``history.column("val_loss")``."""
        if key not in _EPOCH_KEYS:
            raise ValueError(f"History.column: `key` must be one of {_EPOCH_KEYS}, got key={key!r}")
        return [float(e[key]) for e in self.epochs]

    def add_epoch(
        self, *, train_loss: float, val_loss: float, val_metric: float, lr: float, seconds: float
    ) -> None:
        """Append the next epoch's record and update `best_epoch` / `best_metric`."""
        epoch = len(self.epochs) + 1
        self.epochs.append(
            {
                "epoch": epoch,
                "train_loss": float(train_loss),
                "val_loss": float(val_loss),
                "val_metric": float(val_metric),
                "lr": float(lr),
                "seconds": float(seconds),
            }
        )
        m = float(val_metric)
        if math.isnan(m):
            return
        b = self.best_metric
        if self.best_epoch is None or math.isnan(b) or (m < b if self.mode == "min" else m > b):
            self.best_epoch, self.best_metric = epoch, m

    # -- serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (``json.dumps`` works on it); non-finite floats become None."""
        return {
            "format": HISTORY_FORMAT,
            "task": self.task,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "seed": self.seed,
            "metric": self.metric,
            "mode": self.mode,
            "lrs": [_out(x) for x in self.lrs],
            "momenta": [_out(x) for x in self.momenta],
            "losses": [_out(x) for x in self.losses],
            "epochs": [
                {k: (int(e[k]) if k == "epoch" else _out(e[k])) for k in _EPOCH_KEYS} for e in self.epochs
            ],
            "status": self.status,
            "best_epoch": self.best_epoch,
            "best_metric": _out(self.best_metric),
            "final_metric": _out(self.final_metric),
            "test_metric": _out(self.test_metric),
            "restored_epoch": self.restored_epoch,
            "seconds": float(self.seconds),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Rebuild a `History` from `to_dict` output (None becomes NaN).

        Raises:
            ValueError: `data` is not a history of this format, or a field is missing.
        """
        if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"History.from_dict: expected data of format {HISTORY_FORMAT!r}, got {got!r}")
        try:
            return cls(
                task=str(data["task"]),
                optimizer=str(data["optimizer"]),
                schedule=str(data["schedule"]),
                seed=int(data["seed"]),
                metric=str(data["metric"]),
                mode=str(data["mode"]),
                lrs=[_in(x) for x in data["lrs"]],
                momenta=[_in(x) for x in data["momenta"]],
                losses=[_in(x) for x in data["losses"]],
                epochs=[
                    {k: (int(e[k]) if k == "epoch" else _in(e[k])) for k in _EPOCH_KEYS}
                    for e in data["epochs"]
                ],
                status=str(data["status"]),
                best_epoch=None if data["best_epoch"] is None else int(data["best_epoch"]),
                best_metric=_in(data["best_metric"]),
                final_metric=_in(data["final_metric"]),
                test_metric=_in(data["test_metric"]),
                restored_epoch=None if data["restored_epoch"] is None else int(data["restored_epoch"]),
                seconds=float(data["seconds"]),
            )
        except KeyError as e:
            raise ValueError(f"History.from_dict: missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"History.from_dict: bad data: {e}") from None
