"""Composition: sequences with relative time, warmup, scale/shift, product, clip, repeat with
period multiplier and peak decay, a horizon with an explicit policy past it, deterministic noise,
and a momentum companion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrkit.schedules._base import (
    FloatArray,
    Schedule,
    ScheduleError,
    choice,
    integer,
    length,
    real,
    register,
    schedule_arg,
    set_field,
    total_length,
)


def _no_bare_warmup(owner: str, child: Schedule) -> None:
    if isinstance(child, Warmup):
        raise ScheduleError(
            f"{owner}: {child} must be followed by `>> schedule` (it warms up to that "
            f"schedule's first value); to scale or clip it, wrap the whole sequence, "
            f"e.g. 0.5 * ({child} >> cosine(0.1, steps=90))"
        )


@register
@dataclass(frozen=True)
class Warmup(Schedule):
    """Warm up to the value at which the next schedule of a sequence starts.

    Used as ``warmup(steps) >> schedule``: for ``t < steps`` the LR is ``target * f(t / steps)``
    where ``target = schedule(0)`` and ``f`` rises from `start` to 1:

    - ``linear``:      ``f(u) = start + (1 - start) * u``
    - ``cosine``:      ``f(u) = start + (1 - start) * (1 - cos(pi u)) / 2``
    - ``exponential``: ``f(u) = start ** (1 - u)`` (geometric)

    and from step `steps` on, the next schedule runs in its own time, so there is no jump at the
    hand-over. `start` defaults to ``1 / (steps + 1)``, which makes the linear ramp
    ``target * (t + 1) / (steps + 1)``: it never trains a step at LR 0.
    Goyal et al., "Accurate, Large Minibatch SGD", 2017.

    >>> s = warmup(4) >> constant(1.0)
    >>> [round(s(t), 2) for t in range(6)]
    [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    """

    name = "warmup"
    steps: int
    kind: str = "linear"
    start: float | None = None

    def __post_init__(self) -> None:
        set_field(self, "steps", length(self.name, "steps", self.steps))
        set_field(self, "kind", choice(self.name, "kind", self.kind, ("linear", "cosine", "exponential")))
        if self.start is not None:
            set_field(
                self,
                "start",
                real(self.name, "start", self.start, low=0.0, high=1.0, low_open=self.kind == "exponential"),
            )

    @property
    def start_factor(self) -> float:
        return 1.0 / (self.steps + 1.0) if self.start is None else self.start

    def ramp(self, t: FloatArray, target: float) -> FloatArray:
        u = np.minimum(t, self.steps) / self.steps
        s = self.start_factor
        if self.kind == "linear":
            f = s + (1.0 - s) * u
        elif self.kind == "cosine":
            f = s + (1.0 - s) * 0.5 * (1.0 - np.cos(np.pi * u))
        else:
            f = s ** (1.0 - u)
        return target * f

    def _eval(self, t: FloatArray) -> FloatArray:
        raise ScheduleError(f"{self} needs a schedule after it: {self} >> cosine(0.1, steps=90)")

    def check_complete(self) -> None:
        self._eval(np.zeros(0))

    @property
    def duration(self) -> float | None:
        return self.steps


@register
@dataclass(frozen=True)
class Sequence(Schedule):
    """Run schedules one after the other, each in its own relative time: ``a >> b >> c``.

    Part ``i`` starts at ``T_i = d_0 + ... + d_{i-1}`` (``d`` = each part's length) and is
    evaluated at ``t - T_i``. Every part but the last needs a length. A `warmup` part ramps to
    the value at which the following part starts. Nested sequences are flattened.

    >>> s = constant(0.1, steps=10) >> cosine(0.1, steps=90)
    >>> s(10), s(100)
    (0.1, 0.0)

    Momentum: when a part prescribes momentum (`onecycle`, `with_momentum`, ...), every part
    that does not holds one constant momentum taken from its neighbours, so that the momentum
    never depends on what the optimizer was built with (an RMSprop built with momentum 0 keeps no
    momentum buffer for it) and does not jump at the ends of a one-cycle. A `warmup` holds the
    momentum at which the part after it starts, as it warms up to that part's first LR; any
    other part holds the momentum at which the nearest earlier part with momentum ended or, when
    none comes before it, the momentum at which the nearest later one starts.

    >>> s = warmup(5) >> onecycle(0.1, steps=100) >> constant(1e-6)
    >>> s.momentum(0), s.momentum(5), s.momentum(200)
    (0.95, 0.95, 0.95)
    """

    name = "sequence"
    parts: tuple[Schedule, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.parts, (tuple, list)) or len(self.parts) < 2:
            raise ScheduleError(
                f"{self.name}: `parts` must hold at least two schedules, got parts={self.parts!r}"
            )
        flat: list[Schedule] = []
        for i, p in enumerate(self.parts):
            p = schedule_arg(self.name, f"parts[{i}]", p)
            flat.extend(p.parts if isinstance(p, Sequence) else (p,))
        for i, p in enumerate(flat[:-1]):
            if p.duration is None:
                raise ScheduleError(
                    f"sequence: {p} has no length, so nothing can follow it with `>>`; give it "
                    f"one (constant(0.1, steps=50), or horizon({p}, steps=50))"
                )
            if isinstance(p, Warmup) and isinstance(flat[i + 1], Warmup):
                raise ScheduleError(f"sequence: two warmups in a row ({p} >> {flat[i + 1]})")
        for i, p in enumerate(flat):
            if p.has_plateau and i < len(flat) - 1 and isinstance(p, Warmup):
                raise ScheduleError("sequence: a warmup cannot hold a plateau")
        set_field(self, "parts", tuple(flat))
        total_length(self.name, "`parts`", f"{len(flat)} parts", self.duration)

    @property
    def boundaries(self) -> tuple[float, ...]:
        """Start step of each part."""
        starts = [0.0]
        for p in self.parts[:-1]:
            starts.append(starts[-1] + float(p.duration))  # type: ignore[arg-type]
        return tuple(starts)

    def check_complete(self) -> None:
        if isinstance(self.parts[-1], Warmup):
            raise ScheduleError(
                f"{self.parts[-1]} ends the sequence, so it has nothing to warm up to: "
                f"add `>> schedule` after it"
            )
        for p in self.parts:
            if not isinstance(p, Warmup):
                p.check_complete()

    def _pieces(self, t: FloatArray) -> list[tuple[int, Any, FloatArray]]:
        starts = self.boundaries
        idx = np.searchsorted(np.asarray(starts[1:]), t, side="right")
        out = []
        for i, start in enumerate(starts):
            mask = idx == i
            if mask.any():
                out.append((i, mask, t[mask] - start))
        return out

    def _eval(self, t: FloatArray) -> FloatArray:
        out = np.empty(t.shape)
        for i, mask, local in self._pieces(t):
            part = self.parts[i]
            if isinstance(part, Warmup):
                target = float(self.parts[i + 1]._eval(np.zeros(1))[0])
                out[mask] = part.ramp(local, target)
            else:
                out[mask] = part._eval(local)
        return out

    def _held_momenta(self) -> list[float]:
        """The momentum each part without one holds (see the class docstring); NaN elsewhere."""
        n = len(self.parts)
        held = [math.nan] * n

        def at(i: int, time: float) -> float:
            m = self.parts[i]._momentum(np.array([time]))
            return math.nan if m is None else float(m[0])

        last: int | None = None  # the nearest earlier part with momentum
        for i, p in enumerate(self.parts):
            if p.has_momentum:
                last = i
            elif last is not None and not isinstance(p, Warmup):
                held[i] = at(last, float(self.parts[last].duration))  # type: ignore[arg-type]
        following = math.nan  # the momentum at which the next part starts
        for i in reversed(range(n)):
            p = self.parts[i]
            if p.has_momentum:
                following = at(i, 0.0)
                continue
            if isinstance(p, Warmup) or math.isnan(held[i]):
                held[i] = following
            following = held[i]
        return held

    def _momentum(self, t: FloatArray) -> FloatArray | None:
        if not self.has_momentum:
            return None
        out = np.empty(t.shape)
        held = self._held_momenta()
        for i, mask, local in self._pieces(t):
            m = self.parts[i]._momentum(local) if self.parts[i].has_momentum else None
            out[mask] = held[i] if m is None else m
        return out

    @property
    def duration(self) -> float | None:
        last = self.parts[-1].duration
        return None if last is None else self.boundaries[-1] + last

    @property
    def limit(self) -> float | None:
        last = self.parts[-1].limit
        return None if last is None else self.boundaries[-1] + last

    def observe(self, step: float, metric: float) -> Sequence:
        if not self.has_plateau:
            return self
        starts = self.boundaries
        i = int(np.searchsorted(np.asarray(starts[1:]), step, side="right"))
        part = self.parts[i]
        new = part.observe(step - starts[i], metric)
        if new is part:
            return self
        return Sequence(self.parts[:i] + (new,) + self.parts[i + 1 :])


@register
@dataclass(frozen=True)
class Affine(Schedule):
    """Scale and shift: ``lr(t) = scale * s(t) + shift`` (written ``0.5 * s`` and ``s + 1e-5``).

    >>> (0.5 * cosine(0.1, steps=100))(0)
    0.05
    """

    name = "affine"
    schedule: Schedule
    scale: float = 1.0
    shift: float = 0.0

    def __post_init__(self) -> None:
        set_field(self, "schedule", schedule_arg(self.name, "schedule", self.schedule))
        _no_bare_warmup("scale", self.schedule)
        set_field(self, "scale", real("scale", "scale", self.scale, low=0.0))
        set_field(self, "shift", real("shift", "shift", self.shift, low=0.0))
        if isinstance(self.schedule, Affine):  # fold nested affines: a*(b*s + c) + d
            inner = self.schedule
            set_field(self, "shift", self.scale * inner.shift + self.shift)
            set_field(self, "scale", self.scale * inner.scale)
            set_field(self, "schedule", inner.schedule)

    def _eval(self, t: FloatArray) -> FloatArray:
        v = self.schedule._eval(t)
        if self.scale != 1.0:
            v = self.scale * v
        return v + self.shift if self.shift else v

    @property
    def duration(self) -> float | None:
        return self.schedule.duration


@register
@dataclass(frozen=True)
class Product(Schedule):
    """Pointwise product of schedules: ``lr(t) = a(t) * b(t)`` (written ``a * b``).

    Its length is the shortest length among the factors that have one.

    >>> (constant(2.0) * exponential(1.0, factor=0.5))(1)
    1.0
    """

    name = "product"
    factors: tuple[Schedule, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.factors, (tuple, list)) or len(self.factors) < 2:
            raise ScheduleError(f"product: `factors` must hold two or more schedules, got {self.factors!r}")
        flat: list[Schedule] = []
        for i, f in enumerate(self.factors):
            f = schedule_arg(self.name, f"factors[{i}]", f)
            _no_bare_warmup("product", f)
            flat.extend(f.factors if isinstance(f, Product) else (f,))
        if sum(f.has_momentum for f in flat) > 1:
            raise ScheduleError("product: more than one factor cycles momentum")
        set_field(self, "factors", tuple(flat))

    def _eval(self, t: FloatArray) -> FloatArray:
        v = self.factors[0]._eval(t)
        for f in self.factors[1:]:
            v = v * f._eval(t)
        return v

    @property
    def duration(self) -> float | None:
        ds = [f.duration for f in self.factors if f.duration is not None]
        return min(ds) if ds else None


@register
@dataclass(frozen=True)
class Clip(Schedule):
    """Clip into ``[low, high]``: ``lr(t) = min(max(s(t), low), high)``.

    >>> clip(exponential(1.0, factor=0.5), low=0.2)(10)
    0.2
    """

    name = "clip"
    schedule: Schedule
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        set_field(self, "schedule", schedule_arg(self.name, "schedule", self.schedule))
        _no_bare_warmup(self.name, self.schedule)
        if self.low is None and self.high is None:
            raise ScheduleError("clip: give `low`, `high` or both")
        if self.low is not None:
            set_field(self, "low", real(self.name, "low", self.low, low=0.0))
        if self.high is not None:
            set_field(self, "high", real(self.name, "high", self.high, low=0.0))
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ScheduleError(f"clip: `low` must be <= `high`, got low={self.low!r}, high={self.high!r}")

    def _eval(self, t: FloatArray) -> FloatArray:
        v = self.schedule._eval(t)
        if self.low is not None:
            v = np.maximum(v, self.low)
        if self.high is not None:
            v = np.minimum(v, self.high)
        return v

    @property
    def duration(self) -> float | None:
        return self.schedule.duration


@register
@dataclass(frozen=True)
class Repeat(Schedule):
    """Repeat a schedule of length ``P`` in cycles, each `mul` times longer and `decay` times lower.

    Cycle ``i`` (from 0) lasts ``L_i = P * mul**i`` and starts at ``S_i = L_0 + ... + L_{i-1}``;
    ``lr(t) = decay**i * s((t - S_i) * P / L_i)``. With `cycles` set, the schedule ends after that
    many cycles and holds the last cycle's final value. Warm restarts (`sgdr`) and cyclical
    schedules (`cyclic`) are built from it.

    >>> r = repeat(linear(1.0, 0.0, steps=2), decay=0.5)
    >>> [r(t) for t in range(6)]
    [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    """

    name = "repeat"
    schedule: Schedule
    cycles: int | None = None
    mul: float = 1.0
    decay: float = 1.0

    def __post_init__(self) -> None:
        set_field(self, "schedule", schedule_arg(self.name, "schedule", self.schedule))
        _no_bare_warmup(self.name, self.schedule)
        if self.schedule.duration is None:
            raise ScheduleError(
                f"repeat: the repeated schedule needs a length, got {self.schedule} which has none"
            )
        if self.schedule.has_plateau:
            raise ScheduleError("repeat: a plateau cannot be repeated (its state has one timeline)")
        if self.cycles is not None:
            set_field(self, "cycles", integer(self.name, "cycles", self.cycles, low=1))
        set_field(self, "mul", real(self.name, "mul", self.mul, low=1.0))
        set_field(self, "decay", real(self.name, "decay", self.decay, low=0.0, low_open=True))
        with np.errstate(over="ignore"):
            total_length(self.name, "`cycles`", f"cycles={self.cycles}", self.duration)

    @property
    def period(self) -> float:
        return float(self.schedule.duration)  # type: ignore[arg-type]

    def _start(self, i: FloatArray) -> FloatArray:
        p = self.period
        if self.mul == 1.0:
            return p * i
        return p * (self.mul**i - 1.0) / (self.mul - 1.0)

    def _locate(self, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Cycle index and the time inside the first cycle's frame, for each t."""
        p, m = self.period, self.mul
        if m == 1.0:
            i = np.floor(t / p)
        else:
            i = np.floor(np.log1p(t * (m - 1.0) / p) / math.log(m))
            # Correct the float log at exact cycle boundaries.
            i = np.where(self._start(i) > t, i - 1.0, i)
            i = np.where(self._start(i + 1.0) <= t, i + 1.0, i)
        i = np.maximum(i, 0.0)
        local = t - self._start(i)
        if self.cycles is not None:
            over = i >= self.cycles
            i = np.where(over, float(self.cycles - 1), i)
            local = np.where(over, p * m ** float(self.cycles - 1), local)
        inner = local if m == 1.0 else local * (p / (p * m**i))
        return i, inner

    def _eval(self, t: FloatArray) -> FloatArray:
        i, inner = self._locate(t)
        v = self.schedule._eval(inner)
        return v * self.decay**i if self.decay != 1.0 else v

    def _momentum(self, t: FloatArray) -> FloatArray | None:
        if not self.schedule.has_momentum:
            return None
        _, inner = self._locate(t)
        return self.schedule._momentum(inner)

    @property
    def duration(self) -> float | None:
        if self.cycles is None:
            return None
        return float(self._start(np.array(float(self.cycles))))

    @property
    def limit(self) -> float | None:
        return None


@register
@dataclass(frozen=True)
class Horizon(Schedule):
    """Give a schedule a length and say what happens past it.

    ``after="hold"`` (the default of every schedule with a length) holds ``s(steps)`` for every
    later step; ``after="error"`` raises `HorizonError` for any step past `steps`, so that a run
    longer than planned fails loudly instead of training on a stale LR.

    >>> horizon(exponential(1.0, factor=0.5), steps=2)(5)
    0.25
    """

    name = "horizon"
    schedule: Schedule
    steps: int
    after: str = "hold"

    def __post_init__(self) -> None:
        set_field(self, "schedule", schedule_arg(self.name, "schedule", self.schedule))
        _no_bare_warmup(self.name, self.schedule)
        set_field(self, "steps", length(self.name, "steps", self.steps))
        set_field(self, "after", choice(self.name, "after", self.after, ("hold", "error")))

    def _eval(self, t: FloatArray) -> FloatArray:
        return self.schedule._eval(np.minimum(t, self.steps))

    def _momentum(self, t: FloatArray) -> FloatArray | None:
        return self.schedule._momentum(np.minimum(t, self.steps)) if self.schedule.has_momentum else None

    def observe(self, step: float, metric: float) -> Horizon:
        if not self.has_plateau:
            return self
        return Horizon(self.schedule.observe(min(step, self.steps), metric), self.steps, self.after)

    @property
    def duration(self) -> float | None:
        return self.steps

    @property
    def limit(self) -> float | None:
        return self.steps + 1.0 if self.after == "error" else None


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer: a fixed, well-mixed bijection of uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


#: SplitMix64's increment (2**64 / golden ratio, odd).
_GAMMA = 0x9E3779B97F4A7C15


def standard_normal_at(t: FloatArray, seed: int) -> FloatArray:
    """A deterministic standard normal per step: a pure function of (seed, step).

    Counter-based SplitMix64 in wrapping uint64 arithmetic (no Python `hash`, so the same on
    every platform and in every process): the seed is mixed into a key of its own, and the two
    uniforms of step ``k``'s Box-Muller pair are the mixes of the key plus ``(2k + 1)`` and
    ``(2k + 2)`` times the increment. Mixing the seed first keeps every (seed, step) apart from
    the fixed point ``mix(0) = 0``, which seed 0 used to hit at step 0 (a -4.55 sigma draw).
    """
    k = np.floor(t).astype(np.uint64)
    key = _mix64(np.array([(seed + 1) * _GAMMA % 2**64], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        a = _mix64((k * np.uint64(2) + np.uint64(1)) * np.uint64(_GAMMA) + key)
        b = _mix64((k * np.uint64(2) + np.uint64(2)) * np.uint64(_GAMMA) + key)
    u1 = ((a >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u2 = (b >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@register
@dataclass(frozen=True)
class Noise(Schedule):
    """Deterministic multiplicative noise: ``lr(t) = s(t) * exp(std * clip(z(t), -3, 3))``.

    ``z(t)`` is a standard normal that depends only on ``(seed, t)`` (a counter-based hash), so
    the noisy schedule is still a pure function of the step: previews, resumes and every
    adapter see the same values. Log-normal noise never changes the sign of the LR.
    Neelakantan et al., "Adding Gradient Noise Improves Learning", 2015 (noise on the step size).

    >>> s = noise(constant(0.1), std=0.1, seed=1)
    >>> s(7) == s(7)
    True
    """

    name = "noise"
    schedule: Schedule
    std: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        set_field(self, "schedule", schedule_arg(self.name, "schedule", self.schedule))
        _no_bare_warmup(self.name, self.schedule)
        set_field(self, "std", real(self.name, "std", self.std, low=0.0, high=10.0))
        set_field(self, "seed", integer(self.name, "seed", self.seed, low=0))

    def _eval(self, t: FloatArray) -> FloatArray:
        z = np.clip(standard_normal_at(t, self.seed), -3.0, 3.0)
        return self.schedule._eval(t) * np.exp(self.std * z)

    @property
    def duration(self) -> float | None:
        return self.schedule.duration


@register
@dataclass(frozen=True)
class WithMomentum(Schedule):
    """Pair an LR schedule with a momentum schedule (SGD's momentum, or Adam's beta1).

    The LR is ``schedule(t)``; the momentum is ``momentum(t)``. The PyTorch binding writes both.

    >>> s = with_momentum(cosine(0.1, steps=10), linear(0.85, 0.95, steps=10))
    >>> s.momentum(10)
    0.95
    """

    name = "with_momentum"
    print_positional = 2
    schedule: Schedule
    momentum_schedule: Schedule = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        set_field(self, "schedule", schedule_arg(self.name, "schedule", self.schedule))
        _no_bare_warmup(self.name, self.schedule)
        if self.momentum_schedule is None:
            raise ScheduleError("with_momentum: give the momentum schedule as the second argument")
        m = schedule_arg(self.name, "momentum_schedule", self.momentum_schedule)
        _no_bare_warmup(self.name, m)
        if m.has_plateau or m.has_momentum:
            raise ScheduleError("with_momentum: the momentum schedule must be a plain schedule")
        if self.schedule.has_momentum:
            raise ScheduleError("with_momentum: the LR schedule already cycles momentum")
        _check_momentum_values(m)
        set_field(self, "momentum_schedule", m)

    def _eval(self, t: FloatArray) -> FloatArray:
        return self.schedule._eval(t)

    def _momentum(self, t: FloatArray) -> FloatArray | None:
        return self.momentum_schedule._eval(t)

    @property
    def has_momentum(self) -> bool:
        return True

    @property
    def duration(self) -> float | None:
        return self.schedule.duration

    @property
    def limit(self) -> float | None:
        return self.schedule.limit

    def observe(self, step: float, metric: float) -> WithMomentum:
        if not self.has_plateau:
            return self
        return WithMomentum(self.schedule.observe(step, metric), self.momentum_schedule)


def _check_momentum_values(m: Schedule) -> None:
    """Refuse a momentum schedule that leaves [0, 1) (Adam's beta1 must be < 1, SGD's >= 0).

    The values are checked at every step of the first 4096, at 4097 points over the schedule's
    length (its ends included) and at every power of two up to ``2**52``: that finds the extremes
    of constants and of the closed-form schedules, which are monotone or periodic.
    """
    m.check_complete()
    span = float(m.duration) if m.duration is not None else 0.0
    t = np.concatenate((np.arange(4096.0), np.linspace(0.0, span, 4097), 2.0 ** np.arange(53.0)))
    v = m.evaluate(t)
    bad = np.flatnonzero(~((v >= 0.0) & (v < 1.0)))  # NaN is bad too
    if bad.size:
        k = int(bad[0])
        raise ScheduleError(
            f"with_momentum: `momentum_schedule` must stay in [0, 1), got momentum_schedule={m}, "
            f"which is {v[k]:g} at step {int(t[k])}"
        )


warmup = Warmup
repeat = Repeat
clip = Clip
horizon = Horizon
noise = Noise
with_momentum = WithMomentum
