"""`EarlyStopping`: stop a run when a monitored validation value stops improving."""

from __future__ import annotations

import math
from typing import Any, Literal

__all__ = ["MONITORS", "EarlyStopping"]

#: The values early stopping can monitor (keys of `History.epochs`).
MONITORS = ("val_loss", "val_metric")

_FORMAT = "lrkit.EarlyStopping/1"


class EarlyStopping:
    """Stop training after `patience` epochs without improvement of a validation value.

    An epoch improves when its value beats the best so far by more than `min_delta` (lower for
    ``mode="min"``, higher for ``"max"``); NaN never improves. After `patience` epochs in a row
    without improvement the run stops, and with `restore_best` the weights of the best epoch are
    put back at the end of the run (also when it completes or diverges). Its state is plain data
    (`state_dict`), saved in checkpoints.

    Args:
        patience: epochs without improvement before stopping, an int >= 1.
        min_delta: the smallest change that counts as an improvement, finite and >= 0.
        restore_best: end the run with the best epoch's weights.
        mode: ``"min"``, ``"max"``, or None: ``"min"`` for ``val_loss``, the task's own mode for
            ``val_metric`` (resolved by `lrkit.train.fit`).
        monitor: ``"val_loss"`` (default) or ``"val_metric"``.

    >>> es = EarlyStopping(patience=2)
    >>> es.resolve("max")            # the task's mode; val_loss is minimized whatever it is
    >>> [es.update(epoch, v) for epoch, v in enumerate([1.0, 0.8, 0.9, 0.85], start=1)]
    [True, True, False, False]
    >>> es.should_stop, es.best_epoch, es.best
    (True, 2, 0.8)
    """

    def __init__(
        self,
        patience: int,
        min_delta: float = 0.0,
        restore_best: bool = True,
        mode: Literal["min", "max"] | None = None,
        *,
        monitor: Literal["val_loss", "val_metric"] = "val_loss",
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"EarlyStopping: `patience` must be an int >= 1, got patience={patience!r}")
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, (int, float))
            or not (0.0 <= min_delta < math.inf)
        ):
            raise ValueError(
                f"EarlyStopping: `min_delta` must be a finite number >= 0, got min_delta={min_delta!r}"
            )
        if not isinstance(restore_best, bool):
            raise ValueError(
                f"EarlyStopping: `restore_best` must be True or False, got restore_best={restore_best!r}"
            )
        if mode not in ("min", "max", None):
            raise ValueError(f"EarlyStopping: `mode` must be 'min', 'max' or None, got mode={mode!r}")
        if monitor not in MONITORS:
            raise ValueError(f"EarlyStopping: `monitor` must be one of {MONITORS}, got monitor={monitor!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best = restore_best
        self.monitor: str = monitor
        self._requested_mode: str | None = (
            mode if mode is not None else ("min" if monitor == "val_loss" else None)
        )
        self.mode: str | None = self._requested_mode
        self.reset()

    def reset(self) -> None:
        """Forget everything seen; a mode left to the task is unresolved again."""
        self.mode = self._requested_mode
        #: The best value so far (None before the first finite one).
        self.best: float | None = None
        #: The epoch of `best` (1 for the first epoch), or None.
        self.best_epoch: int | None = None
        #: Epochs in a row without improvement.
        self.bad_epochs = 0
        #: The epoch at which the run was told to stop, or None.
        self.stopped_epoch: int | None = None

    def resolve(self, task_mode: str) -> None:
        """Fix `mode` when it was left to the task (``monitor="val_metric"``, ``mode=None``)."""
        if task_mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping.resolve: `task_mode` must be 'min' or 'max', got {task_mode!r}")
        if self.mode is None:
            self.mode = task_mode

    def improves(self, value: float) -> bool:
        """Whether `value` beats the best so far by more than `min_delta`."""
        if self.mode is None:
            raise ValueError(
                "EarlyStopping: `mode` is unresolved; pass mode='min' or 'max', or call resolve()"
            )
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, value: float) -> bool:
        """Record the monitored `value` of `epoch`; returns True when it is the new best."""
        value = float(value)
        if self.improves(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.stopped_epoch is None:
            self.stopped_epoch = epoch
        return False

    @property
    def should_stop(self) -> bool:
        """True once `patience` epochs in a row have not improved."""
        return self.stopped_epoch is not None

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data: the configuration and the state."""
        return {
            "format": _FORMAT,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "restore_best": self.restore_best,
            "mode": self.mode,
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict` output; the monitored value and mode must match.

        Raises:
            ValueError: not an early-stopping state, or one that monitors something else.
        """
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"EarlyStopping.load_state_dict: expected format {_FORMAT!r}, got {got!r}")
        for key in ("monitor", "mode"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"EarlyStopping.load_state_dict: the state has {key}={state.get(key)!r} but this "
                    f"object has {key}={getattr(self, key)!r}"
                )
        best, best_epoch = state.get("best"), state.get("best_epoch")
        bad, stopped = state.get("bad_epochs"), state.get("stopped_epoch")
        if (
            not (best is None or isinstance(best, (int, float)))
            or not (best_epoch is None or isinstance(best_epoch, int))
            or not isinstance(bad, int)
            or not (stopped is None or isinstance(stopped, int))
        ):
            raise ValueError(f"EarlyStopping.load_state_dict: malformed state {state!r}")
        self.best = None if best is None else float(best)
        self.best_epoch, self.bad_epochs, self.stopped_epoch = best_epoch, bad, stopped

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
            f"restore_best={self.restore_best}, mode={self.mode!r}, monitor={self.monitor!r})"
        )
