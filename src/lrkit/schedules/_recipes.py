"""Named recipes built by composition: warm restarts (SGDR), cyclical, one-cycle,
warmup-stable-decay and inverse square root.

Each recipe is a frozen dataclass of its own parameters (so its config and text form stay short)
whose `build()` returns the composition of primitives that it evaluates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from lrkit.schedules._base import (
    MAX_STEP,
    FloatArray,
    Schedule,
    ScheduleError,
    choice,
    integer,
    length,
    real,
    register,
    set_field,
    total_length,
)
from lrkit.schedules._compose import Affine, Product, Repeat, Sequence, Warmup, WithMomentum
from lrkit.schedules._primitives import (
    Anneal,
    Constant,
    Cosine,
    Exponential,
    Linear,
    OneMinusSqrt,
    RSqrtDecay,
)


class Recipe(Schedule):
    """A schedule defined by a composition of other schedules (`build`)."""

    def build(self) -> Schedule:
        raise NotImplementedError

    @cached_property
    def _tree(self) -> Schedule:
        return self.build()

    def _eval(self, t: FloatArray) -> FloatArray:
        return self._tree._eval(t)

    def _momentum(self, t: FloatArray) -> FloatArray | None:
        return self._tree._momentum(t)

    @property
    def has_momentum(self) -> bool:
        return self._tree.has_momentum

    @property
    def duration(self) -> float | None:
        return self._tree.duration


def _momentum_pair(owner: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ScheduleError(
            f"{owner}: `momentum_range` must be [low, high] (or none), got momentum_range={value!r}"
        )
    lo = real(owner, "momentum_range[0]", value[0], low=0.0, high=1.0, high_open=True)
    hi = real(owner, "momentum_range[1]", value[1], low=0.0, high=1.0, high_open=True)
    if lo > hi:
        raise ScheduleError(f"{owner}: `momentum_range` must be [low, high] with low <= high, got {value!r}")
    return (lo, hi)


@register
@dataclass(frozen=True)
class WarmRestarts(Recipe):
    """Cosine annealing with warm restarts (SGDR).

    Cycle ``i`` lasts ``period * mul**i`` steps and anneals from ``lr * decay**i`` to `end` by a
    cosine; ``cycles`` limits the number of cycles (the LR then holds `end`). With ``decay=1`` the
    same sequence as ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=period,
    T_mult=mul, eta_min=end)``. Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017.

    Built as ``end + repeat(cosine(lr - end, steps=period), mul, decay, cycles)``.

    >>> s = sgdr(0.1, period=10, mul=2)
    >>> s(0), s(10), s(30)
    (0.1, 0.1, 0.1)
    """

    name = "sgdr"
    lr: float
    period: int
    mul: float = 1.0
    end: float = 0.0
    decay: float = 1.0
    cycles: int | None = None

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "period", length(self.name, "period", self.period))
        set_field(self, "mul", real(self.name, "mul", self.mul, low=1.0))
        set_field(self, "end", real(self.name, "end", self.end, low=0.0))
        if self.end > self.lr:
            raise ScheduleError(f"sgdr: `end` must be <= `lr`, got end={self.end!r}, lr={self.lr!r}")
        set_field(self, "decay", real(self.name, "decay", self.decay, low=0.0, low_open=True, high=1.0))
        if self.cycles is not None:
            set_field(self, "cycles", integer(self.name, "cycles", self.cycles, low=1))
            with np.errstate(over="ignore"):
                grown = np.float64(self.mul) ** self.cycles
                total = self.period * (self.cycles if self.mul == 1.0 else (grown - 1.0) / (self.mul - 1.0))
            got = f"cycles={self.cycles} with period={self.period!r}, mul={self.mul!r}"
            total_length(self.name, "`cycles`", got, float(total))

    def build(self) -> Schedule:
        one = Cosine(self.lr - self.end, steps=self.period, end=0.0)
        rep = Repeat(one, cycles=self.cycles, mul=self.mul, decay=self.decay)
        return Affine(rep, shift=self.end) if self.end else rep


@register
@dataclass(frozen=True)
class Cyclic(Recipe):
    """Cyclical learning rates between `low` and `high` (Smith, "Cyclical Learning Rates for
    Training Neural Networks", WACV 2017).

    A triangle wave rises for `half` steps and falls for `down` steps (default `half`):

    - ``triangular``:  ``lr = low + (high - low) * tri(t)``
    - ``triangular2``: the amplitude halves every cycle
    - ``exp_range``:   ``lr = low + (high - low) * tri(t) * gamma**t``

    The same sequence as ``torch.optim.lr_scheduler.CyclicLR(base_lr=low, max_lr=high,
    step_size_up=half, step_size_down=down, mode=mode, gamma=gamma)``. With
    ``momentum_range=[low_m, high_m]`` momentum cycles inversely, from `high_m` down to `low_m` at the
    LR's peak (torch's ``cycle_momentum``; the momentum follows the plain triangle, without the
    triangular2 or exp_range amplitude decay); by default momentum is left alone.

    >>> s = cyclic(0.001, 0.1, half=20, mode="triangular2")
    >>> round(s(20), 6), round(s(60), 6)
    (0.1, 0.0505)
    """

    name = "cyclic"
    print_positional = 2
    low: float
    high: float
    half: int
    down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    momentum_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        set_field(self, "low", real(self.name, "low", self.low, low=0.0))
        set_field(self, "high", real(self.name, "high", self.high, low=0.0))
        if self.low > self.high:
            raise ScheduleError(f"cyclic: `low` must be <= `high`, got low={self.low!r}, high={self.high!r}")
        set_field(self, "half", length(self.name, "half", self.half))
        if self.down is not None:
            set_field(self, "down", length(self.name, "down", self.down))
        set_field(
            self,
            "mode",
            choice(self.name, "mode", self.mode, ("triangular", "triangular2", "exp_range")),
        )
        set_field(self, "gamma", real(self.name, "gamma", self.gamma, low=0.0, low_open=True, high=1.0))
        set_field(self, "momentum_range", _momentum_pair(self.name, self.momentum_range))
        down = self.half if self.down is None else self.down
        if self.half + down >= MAX_STEP:
            raise ScheduleError(
                f"cyclic: a cycle, `half` + `down` steps, must be < 2**53 steps, got half={self.half!r}, "
                f"down={down!r}"
            )

    def _wave(self) -> Schedule:
        down = self.half if self.down is None else self.down
        tri = Sequence((Linear(0.0, 1.0, steps=self.half), Linear(1.0, 0.0, steps=down)))
        return Repeat(tri, decay=0.5 if self.mode == "triangular2" else 1.0)

    def build(self) -> Schedule:
        wave = self._wave()
        if self.mode == "exp_range":
            wave = Product((wave, Exponential(1.0, factor=self.gamma)))
        lr = Affine(wave, scale=self.high - self.low, shift=self.low)
        if self.momentum_range is None:
            return lr
        lo, hi = self.momentum_range
        # momentum = hi - (hi - lo) * wave: written as lo + (hi - lo) * (1 - wave) on the
        # inverted triangle so that every node stays non-negative.
        down = self.half if self.down is None else self.down
        inv = Repeat(
            Sequence((Linear(1.0, 0.0, steps=self.half), Linear(0.0, 1.0, steps=down))),
        )
        return WithMomentum(lr, Affine(inv, scale=hi - lo, shift=lo))


def _empty_phase(ends: tuple[float, ...]) -> bool:
    starts = (0.0,) + ends[:-1]
    return any(e <= s for s, e in zip(starts, ends, strict=True))


@register
@dataclass(frozen=True)
class OneCycle(Recipe):
    """The one-cycle policy (Smith & Topin, "Super-Convergence", 2018; Smith 2018).

    Two phases (default): from ``lr / div_factor`` up to `lr` over the first ``pct_start`` of the
    `steps`, then down to ``lr / div_factor / final_div_factor``. Three phases
    (``three_phase=True``): up, back down to the initial LR symmetrically, then to the final LR.
    Annealing is ``"cos"`` or ``"linear"``. Momentum cycles inversely between ``momentum_range[1]`` and
    ``momentum_range[0]`` (``momentum_range=none`` leaves it alone). The same sequence as
    ``torch.optim.lr_scheduler.OneCycleLR(max_lr=lr, total_steps=steps, ...)`` with the same
    defaults; past the last step it holds the final LR (torch raises).

    Built as a sequence of `cosine` (or `linear`) anneals joined at the phase boundaries, paired
    with the momentum sequence by `with_momentum`.

    >>> s = onecycle(0.1, steps=100)
    >>> round(s(0), 12), s(29), s.momentum(29)
    (0.004, 0.1, 0.85)
    """

    name = "onecycle"
    lr: float
    steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    anneal: str = "cos"
    momentum_range: tuple[float, float] | None = field(default=(0.85, 0.95))

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "steps", length(self.name, "steps", self.steps, low=2))
        set_field(
            self,
            "pct_start",
            real(self.name, "pct_start", self.pct_start, low=0.0, low_open=True, high=1.0, high_open=True),
        )
        set_field(self, "div_factor", real(self.name, "div_factor", self.div_factor, low=0.0, low_open=True))
        set_field(
            self,
            "final_div_factor",
            real(self.name, "final_div_factor", self.final_div_factor, low=0.0, low_open=True),
        )
        if not isinstance(self.three_phase, bool):
            raise ScheduleError(f"onecycle: `three_phase` must be true or false, got {self.three_phase!r}")
        set_field(self, "anneal", choice(self.name, "anneal", self.anneal, ("cos", "linear")))
        set_field(self, "momentum_range", _momentum_pair(self.name, self.momentum_range))
        if _empty_phase(self._phase_ends()):
            # every phase lasts more than 0 steps iff 1/steps < pct_start < 1 (two phases) or
            # < (steps + 1) / (2 steps) (three): some pct_start always works since steps >= 2
            n, p = self.steps, self.pct_start
            high, bound = ((n + 1) / (2 * n), "(steps + 1) / (2 * steps)") if self.three_phase else (1.0, "1")
            hint = f"a pct_start between 1/steps and {bound}, here between {1 / n:.4g} and {high:.4g}"
            if p * n <= 1.0:  # the first phase is empty: more steps make it last
                more = math.floor(1.0 / p) + 1
                while more < MAX_STEP and _empty_phase(self._phase_ends(more)):
                    more += 1
                if more < MAX_STEP:
                    hint = f"steps >= {more} with this pct_start, or {hint}"
            raise ScheduleError(
                f"onecycle: steps={n} with pct_start={p}{', three_phase=true' if self.three_phase else ''} "
                f"leaves an empty phase; use {hint} (both excluded)"
            )

    def _phase_ends(self, steps: int | None = None) -> tuple[float, ...]:
        n = self.steps if steps is None else steps
        up = float(self.pct_start * n) - 1.0
        if self.three_phase:
            return (up, float(2 * self.pct_start * n) - 2.0, float(n - 1))
        return (up, float(n - 1))

    def _anneal(self, a: float, b: float, d: float) -> Schedule:
        return Anneal(a, b, steps=d, kind=self.anneal)  # d may be fractional, as in torch

    def _chain(self, values: tuple[float, ...]) -> Schedule:
        ends = self._phase_ends()
        starts = (0.0,) + ends[:-1]
        parts = [self._anneal(values[i], values[i + 1], ends[i] - starts[i]) for i in range(len(ends))]
        return Sequence(tuple(parts))

    def build(self) -> Schedule:
        initial = self.lr / self.div_factor
        final = initial / self.final_div_factor
        if self.three_phase:
            lr = self._chain((initial, self.lr, initial, final))
        else:
            lr = self._chain((initial, self.lr, final))
        if self.momentum_range is None:
            return lr
        lo, hi = self.momentum_range
        mom = self._chain((hi, lo, hi, hi) if self.three_phase else (hi, lo, hi))
        return WithMomentum(lr, mom)

    @property
    def duration(self) -> float | None:
        return float(self.steps)


@register
@dataclass(frozen=True)
class WarmupStableDecay(Recipe):
    """Warmup-stable-decay (trapezoidal): warm up for `warmup` steps, hold `lr` for `stable`
    steps, then decay to `end` over `decay` steps by ``kind``: ``"linear"``, ``"cosine"`` or
    ``"sqrt"`` (the 1-sqrt cooldown). Hägele et al., NeurIPS 2024; Hu et al., "MiniCPM", 2024.

    Built as ``warmup(warmup) >> constant(lr, steps=stable) >> decay``.

    >>> s = wsd(0.1, warmup=10, stable=70, decay=20, end=0)
    >>> s(10), s(79), s(100)
    (0.1, 0.1, 0.0)
    """

    name = "wsd"
    lr: float
    warmup: int
    stable: int
    decay: int
    end: float = 0.0
    kind: str = "linear"
    warmup_kind: str = "linear"

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "warmup", length(self.name, "warmup", self.warmup, low=0))
        set_field(self, "stable", length(self.name, "stable", self.stable, low=0))
        set_field(self, "decay", length(self.name, "decay", self.decay))
        set_field(self, "end", real(self.name, "end", self.end, low=0.0))
        set_field(self, "kind", choice(self.name, "kind", self.kind, ("linear", "cosine", "sqrt")))
        set_field(
            self,
            "warmup_kind",
            choice(self.name, "warmup_kind", self.warmup_kind, ("linear", "cosine", "exponential")),
        )
        total_length(
            self.name,
            "`warmup`, `stable` and `decay`",
            f"warmup={self.warmup}, stable={self.stable}, decay={self.decay}",
            float(self.warmup + self.stable + self.decay),
        )

    def build(self) -> Schedule:
        parts: list[Schedule] = []
        if self.warmup:
            parts.append(Warmup(self.warmup, kind=self.warmup_kind))
        if self.stable:
            parts.append(Constant(self.lr, steps=self.stable))
        if self.kind == "linear":
            parts.append(Linear(self.lr, self.end, steps=self.decay))
        elif self.kind == "cosine":
            parts.append(Cosine(self.lr, steps=self.decay, end=self.end))
        else:
            parts.append(OneMinusSqrt(self.lr, steps=self.decay, end=self.end))
        return parts[0] if len(parts) == 1 else Sequence(tuple(parts))


@register
@dataclass(frozen=True)
class InverseSqrt(Recipe):
    """Inverse square root decay after a linear warmup (Vaswani et al., "Attention Is All You
    Need", 2017): ``lr(t) = lr * sqrt(timescale / (timescale + t - warmup))`` for
    ``t >= warmup``; `timescale` defaults to `warmup` (or 1 without warmup), which makes it
    ``lr * sqrt(warmup / t)``, the Transformer and fairseq form.

    >>> s = inverse_sqrt(0.1, warmup=10)
    >>> s(10), s(40)
    (0.1, 0.05)
    """

    name = "inverse_sqrt"
    lr: float
    warmup: int = 0
    timescale: int | None = None

    def __post_init__(self) -> None:
        set_field(self, "lr", real(self.name, "lr", self.lr, low=0.0))
        set_field(self, "warmup", length(self.name, "warmup", self.warmup, low=0))
        if self.timescale is not None:
            set_field(self, "timescale", length(self.name, "timescale", self.timescale))

    def build(self) -> Schedule:
        ts = self.timescale if self.timescale is not None else float(max(self.warmup, 1))
        decay = RSqrtDecay(self.lr, float(ts))
        return Sequence((Warmup(self.warmup), decay)) if self.warmup else decay


sgdr = WarmRestarts
cyclic = Cyclic
onecycle = OneCycle
wsd = WarmupStableDecay
inverse_sqrt = InverseSqrt
