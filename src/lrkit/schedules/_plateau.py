"""Reduce-on-plateau as a schedule node that composes with the closed-form schedules."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lrkit.schedules._base import (
    FloatArray,
    Schedule,
    ScheduleError,
    choice,
    integer,
    real,
    register,
    set_field,
)


@register
@dataclass(frozen=True)
class Plateau(Schedule):
    """Reduce the LR by `factor` when a reported metric stops improving.

    ``lr(t) = max(base(t) * factor ** k(t), min_lr)`` where ``base`` is `lr` (a number or any
    schedule) and ``k(t)`` counts the reductions made at or before local step ``t``; before the
    first reduction the LR is ``base(t)`` unchanged. The node is still a pure function of the
    step *and its state*: reporting a metric (`observe`) returns a new node whose state
    (``best``, ``bad``, ``cooldown_left`` and the steps of past ``reductions``) is plain data in
    its config, so checkpoints, resumes and previews are exact.

    The decision rule is ``torch.optim.lr_scheduler.ReduceLROnPlateau``'s, with the same defaults:
    a metric is an improvement if it beats ``best`` by more than `threshold` (relative or
    absolute, for ``mode="min"`` or ``"max"``); after more than `patience` reports without one,
    the LR is reduced and `cooldown` reports are ignored; a reduction smaller than `eps` is not
    made. NaN never improves. As in torch, the best starts at the worst value (``+inf`` for
    ``"min"``, ``-inf`` for ``"max"``; ``best=None`` before any report), so an infinite metric
    (a diverged loss) is a bad report like any other, and a metric of ``-inf`` in ``"min"`` mode
    (``+inf`` in ``"max"``) becomes a best that nothing beats. Configs and specs write an infinite
    best as the string ``"inf"`` or ``"-inf"`` (JSON has no infinity).

    Composes: ``warmup(500) >> plateau(1e-3, factor=0.5, patience=3)`` warms up and then reduces
    on plateau; metrics reported during the warmup are ignored.

    >>> p = plateau(0.1, factor=0.5, patience=0)
    >>> p = p.observe(0, 1.0).observe(100, 2.0)   # the second report does not improve
    >>> p(99), p(100)
    (0.1, 0.05)
    """

    name = "plateau"
    lr: float | Schedule
    factor: float = 0.1
    patience: int = 10
    mode: str = "min"
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8
    # state (plain data, updated by `observe`)
    best: float | None = field(default=None, kw_only=True)
    bad: int = field(default=0, kw_only=True)
    cooldown_left: int = field(default=0, kw_only=True)
    reductions: tuple[float, ...] = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.lr, Schedule):
            set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        else:
            from lrkit.schedules._compose import _no_bare_warmup

            _no_bare_warmup(self.name, self.lr)
        set_field(
            self,
            "factor",
            real(self.name, "factor", self.factor, low=0.0, low_open=True, high=1.0, high_open=True),
        )
        set_field(self, "patience", integer(self.name, "patience", self.patience, low=0))
        set_field(self, "mode", choice(self.name, "mode", self.mode, ("min", "max")))
        set_field(self, "threshold", real(self.name, "threshold", self.threshold, low=0.0))
        set_field(
            self,
            "threshold_mode",
            choice(self.name, "threshold_mode", self.threshold_mode, ("rel", "abs")),
        )
        set_field(self, "cooldown", integer(self.name, "cooldown", self.cooldown, low=0))
        set_field(self, "min_lr", real(self.name, "min_lr", self.min_lr, low=0.0))
        set_field(self, "eps", real(self.name, "eps", self.eps, low=0.0))
        if self.best is not None:
            set_field(self, "best", _best(self.best))
        set_field(self, "bad", integer(self.name, "bad", self.bad, low=0))
        set_field(self, "cooldown_left", integer(self.name, "cooldown_left", self.cooldown_left, low=0))
        if not isinstance(self.reductions, (tuple, list)):
            raise ScheduleError(
                f"plateau: `reductions` must be a list of steps, got reductions={self.reductions!r}"
            )
        red = tuple(real(self.name, f"reductions[{i}]", r, low=0.0) for i, r in enumerate(self.reductions))
        if any(b < a for a, b in zip(red, red[1:], strict=False)):
            raise ScheduleError(f"plateau: `reductions` must be non-decreasing, got {list(red)}")
        set_field(self, "reductions", tuple(int(r) if r.is_integer() else r for r in red))

    def _base(self, t: FloatArray) -> FloatArray:
        if isinstance(self.lr, Schedule):
            return self.lr._eval(t)
        return np.full(t.shape, self.lr)

    def _eval(self, t: FloatArray) -> FloatArray:
        base = self._base(t)
        if not self.reductions:
            return base
        k = np.searchsorted(np.asarray(self.reductions, dtype=np.float64), t, side="right")
        reduced = np.maximum(base * self.factor ** k.astype(np.float64), self.min_lr)
        return np.where(k > 0, reduced, base)

    @property
    def has_plateau(self) -> bool:
        return True

    @property
    def duration(self) -> float | None:
        return self.lr.duration if isinstance(self.lr, Schedule) else None

    def fresh(self) -> Plateau:
        lr = self.lr.fresh() if isinstance(self.lr, Schedule) else self.lr
        return replace(self, lr=lr, best=None, bad=0, cooldown_left=0, reductions=())

    def improves(self, metric: float) -> bool:
        """Whether `metric` beats the best so far by more than the threshold (torch's rule)."""
        if math.isnan(metric):
            return False
        b = self.best
        if b is None:  # torch starts from the worst value
            b = math.inf if self.mode == "min" else -math.inf
        if self.mode == "min":
            ref = b * (1.0 - self.threshold) if self.threshold_mode == "rel" else b - self.threshold
            return metric < ref
        ref = b * (1.0 + self.threshold) if self.threshold_mode == "rel" else b + self.threshold
        return metric > ref

    def observe(self, step: float, metric: Any) -> Plateau:
        """Report `metric` at local step `step`; returns the updated node."""
        try:
            m = float(metric)
        except (TypeError, ValueError):
            raise ScheduleError(f"plateau: the metric must be a number, got {metric!r}") from None
        lr = self.lr.observe(step, m) if isinstance(self.lr, Schedule) else self.lr
        best, bad, cooldown_left = self.best, self.bad, self.cooldown_left
        if self.improves(m):
            best, bad = m, 0
        else:
            bad += 1
        if cooldown_left > 0:
            cooldown_left -= 1
            bad = 0
        reductions = self.reductions
        if bad > self.patience:
            if reductions and step < reductions[-1]:
                raise ScheduleError(
                    f"plateau: metrics must be reported in step order, got step {step} after a "
                    f"reduction at step {reductions[-1]}"
                )
            now = np.array([float(step)])
            current = float(self._eval(now)[0])
            after = float(replace(self, reductions=reductions + (step,))._eval(now)[0])
            if current - after > self.eps:  # torch's rule: smaller changes are not made
                reductions = reductions + (step,)
            cooldown_left = self.cooldown
            bad = 0
        return replace(self, lr=lr, best=best, bad=bad, cooldown_left=cooldown_left, reductions=reductions)

    def to_config(self) -> dict[str, Any]:
        cfg = super().to_config()
        if self.best is not None and math.isinf(self.best):
            cfg["best"] = repr(self.best)  # "inf" or "-inf": JSON has no infinity
        return cfg


def _best(value: Any) -> float:
    """Validate the stored best metric: a number, infinities included (also as "inf"/"-inf")."""
    if isinstance(value, str) and value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, (float, np.floating)) and math.isinf(value):
        return float(value)
    try:
        return real("plateau", "best", value)
    except ScheduleError:
        raise ScheduleError(
            f'plateau: `best` must be a number, "inf" or "-inf" (or none), got best={value!r}'
        ) from None


plateau = Plateau
