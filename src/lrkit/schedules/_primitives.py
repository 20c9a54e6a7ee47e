"""Primitive schedules: closed-form functions of the step with no children.

Every formula below uses `t` for the step (the local step inside a composite) and `lr` for the
value at step 0. Schedules with a length (`steps`) hold their final value past it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lrkit.schedules._base import (
    FloatArray,
    Schedule,
    ScheduleError,
    length,
    real,
    register,
    set_field,
)


class _Finite:
    """Schedules that run for `steps` and hold their final value past them."""

    steps: float

    @property
    def duration(self) -> float | None:
        return self.steps

    def _progress(self, t: FloatArray) -> FloatArray:
        """Fraction of the way through, clamped to [0, 1]."""
        return np.minimum(t, self.steps) / self.steps


@register
@dataclass(frozen=True)
class Constant(Schedule):
    """A fixed learning rate: ``lr(t) = lr``.

    Args:
        lr: the value, >= 0.
        steps: optional length (so that ``constant(0.1, steps=50) >> cosine(...)`` can follow it).

    >>> constant(0.1)(1000)
    0.1
    """

    name = "constant"
    lr: float
    steps: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        if self.steps is not None:
            set_field(self, "steps", length(self.name, "steps", self.steps))

    def _eval(self, t: FloatArray) -> FloatArray:
        return np.full(t.shape, self.lr)

    @property
    def duration(self) -> float | None:
        return self.steps


@register
@dataclass(frozen=True)
class StepDecay(Schedule):
    """Step decay: ``lr(t) = lr * factor ** floor(t / every)``.

    The same sequence as ``torch.optim.lr_scheduler.StepLR(step_size=every, gamma=factor)``.

    Args:
        lr: value at step 0, >= 0.
        every: steps between decays, > 0.
        factor: multiplier at each decay, > 0 (default 0.1).

    >>> round(step(0.1, every=30, factor=0.1)(30), 12)
    0.01
    """

    name = "step"
    lr: float
    every: int
    factor: float = 0.1

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "every", length(self.name, "every", self.every))
        set_field(self, "factor", real(self.name, "factor", self.factor, low=0.0, low_open=True))

    def _eval(self, t: FloatArray) -> FloatArray:
        return self.lr * self.factor ** np.floor(t / self.every)


@register
@dataclass(frozen=True)
class MultiStep(Schedule):
    """Decay at given milestones: ``lr(t) = lr * factor ** #{m in milestones : m <= t}``.

    The same sequence as ``torch.optim.lr_scheduler.MultiStepLR(milestones, gamma=factor)``.

    Args:
        lr: value at step 0, >= 0.
        milestones: strictly increasing steps (> 0) at which the LR is multiplied by `factor`.
        factor: multiplier at each milestone, > 0 (default 0.1).

    >>> round(multistep(0.1, milestones=[30, 80])(80), 12)
    0.001
    """

    name = "multistep"
    lr: float
    milestones: tuple[int, ...]
    factor: float = 0.1

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        ms = self.milestones
        if not isinstance(ms, (list, tuple)) or not ms:
            raise ScheduleError(
                f"{self.name}: `milestones` must be a non-empty list of steps, got milestones={ms!r}"
            )
        ints = tuple(length(self.name, f"milestones[{i}]", m) for i, m in enumerate(ms))
        if any(b <= a for a, b in zip(ints, ints[1:], strict=False)):
            raise ScheduleError(
                f"{self.name}: `milestones` must be strictly increasing, got milestones={list(ms)}"
            )
        set_field(self, "milestones", ints)
        set_field(self, "factor", real(self.name, "factor", self.factor, low=0.0, low_open=True))

    def _eval(self, t: FloatArray) -> FloatArray:
        k = np.searchsorted(np.asarray(self.milestones, dtype=np.float64), t, side="right")
        return self.lr * self.factor ** k.astype(np.float64)


@register
@dataclass(frozen=True)
class Exponential(Schedule):
    """Exponential decay: ``lr(t) = lr * factor ** (t / every)`` (``floor(t / every)`` if staircase).

    With ``every=1`` the same sequence as ``torch.optim.lr_scheduler.ExponentialLR(gamma=factor)``;
    with ``staircase=True`` it is Keras' ``ExponentialDecay(staircase=True)``. A factor above 1
    grows the LR (as in an LR range test).

    >>> exponential(0.1, factor=0.5)(2)
    0.025
    """

    name = "exponential"
    lr: float
    factor: float
    every: int = 1
    staircase: bool = False

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "factor", real(self.name, "factor", self.factor, low=0.0, low_open=True))
        set_field(self, "every", length(self.name, "every", self.every))
        if not isinstance(self.staircase, bool):
            raise ScheduleError(
                f"{self.name}: `staircase` must be true or false, got staircase={self.staircase!r}"
            )

    def _eval(self, t: FloatArray) -> FloatArray:
        p = t / self.every
        if self.staircase:
            p = np.floor(p)
        return self.lr * self.factor**p


@register
@dataclass(frozen=True)
class InverseTime(Schedule):
    """Inverse-time decay: ``lr(t) = lr / (1 + rate * t / every)`` (floored if staircase).

    Keras' ``InverseTimeDecay``; the classic ``a / (1 + b t)`` of stochastic approximation.

    >>> inverse_time(0.1, rate=1.0)(1)
    0.05
    """

    name = "inverse_time"
    lr: float
    rate: float
    every: int = 1
    staircase: bool = False

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "rate", real(self.name, "rate", self.rate, low=0.0))
        set_field(self, "every", length(self.name, "every", self.every))
        if not isinstance(self.staircase, bool):
            raise ScheduleError(
                f"{self.name}: `staircase` must be true or false, got staircase={self.staircase!r}"
            )

    def _eval(self, t: FloatArray) -> FloatArray:
        p = t / self.every
        if self.staircase:
            p = np.floor(p)
        return self.lr / (1.0 + self.rate * p)


@register
@dataclass(frozen=True)
class Polynomial(_Finite, Schedule):
    """Polynomial decay: ``lr(t) = end + (lr - end) * (1 - min(t, steps) / steps) ** power``.

    With ``end=0`` the same sequence as ``torch.optim.lr_scheduler.PolynomialLR(total_iters=steps,
    power=power)``; optax's ``polynomial_schedule``.

    >>> polynomial(0.1, steps=100, power=2)(50)
    0.025
    """

    name = "polynomial"
    lr: float
    steps: int
    power: float = 1.0
    end: float = 0.0

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "steps", length(self.name, "steps", self.steps))
        set_field(self, "power", real(self.name, "power", self.power, low=0.0, low_open=True))
        set_field(self, "end", real(self.name, "end", self.end, low=0.0))

    def _eval(self, t: FloatArray) -> FloatArray:
        frac = 1.0 - self._progress(t)
        return self.end + (self.lr - self.end) * frac**self.power


@register
@dataclass(frozen=True)
class Linear(_Finite, Schedule):
    """Linear interpolation: ``lr(t) = start + (end - start) * min(t, steps) / steps``.

    ``torch.optim.lr_scheduler.LinearLR(start_factor, end_factor, total_iters)`` is
    ``linear(lr * start_factor, lr * end_factor, steps=total_iters)``. Either end may be larger.

    >>> linear(0.0, 1.0, steps=4)(1)
    0.25
    """

    name = "linear"
    print_positional = 2
    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        set_field(self, "start", real(self.name, "start", self.start, low=0.0))
        set_field(self, "end", real(self.name, "end", self.end, low=0.0))
        set_field(self, "steps", length(self.name, "steps", self.steps))

    def _eval(self, t: FloatArray) -> FloatArray:
        return self.start + (self.end - self.start) * self._progress(t)


@register
@dataclass(frozen=True)
class Cosine(_Finite, Schedule):
    """Cosine annealing: ``lr(t) = end + (lr - end) * c(t) ** exponent`` with
    ``c(t) = (1 + cos(pi * min(t, steps) / steps)) / 2``.

    With ``exponent=1``, for ``t <= steps``, the same sequence as
    ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=steps, eta_min=end)``; past `steps` it
    holds `end` (torch's goes back up). optax's ``cosine_decay_schedule`` has the same exponent.
    `end` may exceed `lr` (a cosine ramp up). Loshchilov & Hutter, "SGDR", ICLR 2017.

    >>> cosine(0.1, steps=100, end=0.0)(50)
    0.05
    """

    name = "cosine"
    lr: float
    steps: int
    end: float = 0.0
    exponent: float = 1.0

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "steps", length(self.name, "steps", self.steps))
        set_field(self, "end", real(self.name, "end", self.end, low=0.0))
        set_field(self, "exponent", real(self.name, "exponent", self.exponent, low=0.0, low_open=True))

    def _eval(self, t: FloatArray) -> FloatArray:
        c = 0.5 * (1.0 + np.cos(np.pi * self._progress(t)))
        if self.exponent != 1.0:
            c = c**self.exponent
        return self.end + (self.lr - self.end) * c


@register
@dataclass(frozen=True)
class OneMinusSqrt(_Finite, Schedule):
    """The 1-sqrt cooldown: ``lr(t) = end + (lr - end) * (1 - sqrt(min(t, steps) / steps))``.

    The decay phase of warmup-stable-decay found best by Hägele et al., "Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS 2024.

    >>> one_minus_sqrt(0.1, steps=100)(25)
    0.05
    """

    name = "one_minus_sqrt"
    lr: float
    steps: int
    end: float = 0.0

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "steps", length(self.name, "steps", self.steps))
        set_field(self, "end", real(self.name, "end", self.end, low=0.0))

    def _eval(self, t: FloatArray) -> FloatArray:
        return self.end + (self.lr - self.end) * (1.0 - np.sqrt(self._progress(t)))


@dataclass(frozen=True)
class RSqrtDecay(Schedule):
    """``lr(t) = lr * sqrt(timescale / (timescale + t))``: the decay half of `inverse_sqrt`."""

    name = "rsqrt_decay"
    lr: float
    timescale: float

    def _eval(self, t: FloatArray) -> FloatArray:
        return self.lr * np.sqrt(self.timescale / (self.timescale + t))


@dataclass(frozen=True)
class Anneal(_Finite, Schedule):
    """From `start` to `end` over `steps` by a cosine (``kind="cos"``, as `cosine`) or a straight
    line (``"linear"``, as `linear`): a phase of `onecycle`. torch puts one-cycle's phase ends at
    ``pct_start * steps - 1``, so `steps` is any real > 0 here; built only by recipes, never
    parsed, so not registered and not validated."""

    name = "anneal"
    start: float
    end: float
    steps: float
    kind: str = "cos"

    def _eval(self, t: FloatArray) -> FloatArray:
        if self.kind == "cos":
            c = 0.5 * (1.0 + np.cos(np.pi * self._progress(t)))
            return self.end + (self.start - self.end) * c
        return self.start + (self.end - self.start) * self._progress(t)


# Lower-case constructors, the names used in the text form.
constant = Constant
step = StepDecay
multistep = MultiStep
exponential = Exponential
inverse_time = InverseTime
polynomial = Polynomial
linear = Linear
cosine = Cosine
one_minus_sqrt = OneMinusSqrt
