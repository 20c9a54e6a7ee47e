"""The `Schedule` base class, the registry of schedule types, and config round-trips.

A schedule is a frozen dataclass and a pure, closed-form function of the optimizer step. Every
subclass implements `_eval`, a vectorized formula over a float64 array of local times; the public
`__call__` validates the steps, evaluates, and returns a float for an int or an array for an array.

Time is kept as float64 internally so that composites can hand a child a relative or stretched
time (a sequence part starts at its own zero; a restart cycle is a stretched copy of its first).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeVar, overload

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
S = TypeVar("S", bound="Schedule")

#: Steps must stay below this so that float64 time is exact.
MAX_STEP = 2**53


class ScheduleError(ValueError):
    """Base class of lrkit's schedule errors (a `ValueError`)."""


class HorizonError(ScheduleError):
    """A step past the end of a schedule whose policy past the horizon is ``"error"``."""


_REGISTRY: dict[str, type[Schedule]] = {}


def register(cls: type[S]) -> type[S]:
    """Class decorator: make a schedule type known to `from_config` and the text parser."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise RuntimeError(f"schedule type {name!r} registered twice")
    _REGISTRY[name] = cls
    return cls


def registry() -> Mapping[str, type[Schedule]]:
    """The schedule types by their config/spec name (read-only view)."""
    return dict(_REGISTRY)


def _float_time(step: Any) -> tuple[FloatArray, bool]:
    """Validate steps (an int or an integer array, all >= 0) and return float64 times."""
    if isinstance(step, bool):
        raise TypeError(f"step must be an int or an integer array, got bool {step!r}")
    if isinstance(step, (int, np.integer)):
        value = int(step)
        if value < 0 or value >= MAX_STEP:
            raise ValueError(f"step must be in [0, 2**53), got step={value}")
        return np.array([float(value)]), True
    arr = np.asarray(step)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"step must be an int or an integer array, got an array of dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= MAX_STEP):
        raise ValueError(f"steps must be in [0, 2**53), got values from {arr.min()} to {arr.max()}")
    return arr.astype(np.float64), False


class Schedule:
    """Base class of every schedule.

    Subclasses are frozen dataclasses registered with `register`; they implement `_eval(t)` over
    a float64 array of times and may override `duration`, `limit`, `_momentum` and `observe`.
    """

    name: ClassVar[str] = ""
    #: How many leading arguments the text form writes without their names.
    print_positional: ClassVar[int] = 1

    # -- what a subclass implements -------------------------------------------------------------
    def _eval(self, t: FloatArray) -> FloatArray:
        raise NotImplementedError

    def _momentum(self, t: FloatArray) -> FloatArray | None:
        """Momentum (or Adam's beta1) this schedule implies at times `t`; NaN = leave as is."""
        momenta = [c for c in self.children() if c.has_momentum]
        if not momenta:
            return None
        if len(momenta) > 1:
            raise ScheduleError(f"{self.name}: more than one child cycles momentum")
        return momenta[0]._momentum(t)

    @property
    def duration(self) -> float | None:
        """Length in steps where the schedule has one (its end); None when open-ended."""
        return None

    @property
    def limit(self) -> float | None:
        """First step that raises `HorizonError` (policy ``after="error"``), or None."""
        limits = [c.limit for c in self.children()]
        known = [x for x in limits if x is not None]
        return min(known) if known else None

    def observe(self: S, step: float, metric: float) -> S:
        """Return the schedule after a metric was reported at `step` (see `plateau`).

        Pure schedules return themselves; metric-driven nodes return an updated copy.
        """
        if not self.has_plateau:
            return self
        return self._map_children(lambda c: c.observe(step, metric))

    # -- structure ------------------------------------------------------------------------------
    def children(self) -> tuple[Schedule, ...]:
        """The schedules this one is built from (its fields that hold schedules)."""
        out: list[Schedule] = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Schedule):
                out.append(v)
            elif isinstance(v, tuple):
                out.extend(x for x in v if isinstance(x, Schedule))
        return tuple(out)

    def walk(self) -> Iterator[Schedule]:
        """This node and all its descendants, depth first."""
        yield self
        for c in self.children():
            yield from c.walk()

    def _map_children(self: S, fn: Any) -> S:
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Schedule):
                changes[f.name] = fn(v)
            elif isinstance(v, tuple) and any(isinstance(x, Schedule) for x in v):
                changes[f.name] = tuple(fn(x) if isinstance(x, Schedule) else x for x in v)
        if not changes:
            return self
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @property
    def has_momentum(self) -> bool:
        """True when the schedule also prescribes momentum (one-cycle, `with_momentum`)."""
        return any(c.has_momentum for c in self.children())

    @property
    def has_plateau(self) -> bool:
        """True when a metric-driven node (`plateau`) is part of this schedule."""
        return any(c.has_plateau for c in self.children())

    def fresh(self: S) -> S:
        """The same schedule with all metric-driven state reset (as parsed from its spec)."""
        if not self.has_plateau:
            return self
        return self._map_children(lambda c: c.fresh())

    def check_complete(self) -> None:
        """Raise `ScheduleError` when the schedule cannot be evaluated on its own."""
        for c in self.children():
            c.check_complete()

    # -- evaluation -----------------------------------------------------------------------------
    def _checked_time(self, step: Any) -> tuple[FloatArray, bool]:
        t, scalar = _float_time(step)
        self.check_complete()
        lim = self.limit
        if lim is not None and t.size and float(t.max()) >= lim:
            raise HorizonError(
                f"{self}: step {int(t.max())} is past the horizon; this schedule ends at step "
                f"{int(lim) - 1} and its policy past the horizon is after='error'"
            )
        return t, scalar

    @overload
    def __call__(self, step: int | np.integer[Any]) -> float: ...
    @overload
    def __call__(self, step: npt.ArrayLike) -> FloatArray: ...

    def __call__(self, step: Any) -> float | FloatArray:
        """The learning rate at `step` (an int), or at every step of an integer array."""
        t, scalar = self._checked_time(step)
        with np.errstate(all="ignore"):
            out = self._eval(t)
        return float(out[0]) if scalar else out.reshape(np.shape(step))

    @overload
    def momentum(self, step: int | np.integer[Any]) -> float | None: ...
    @overload
    def momentum(self, step: npt.ArrayLike) -> FloatArray | None: ...

    def momentum(self, step: Any) -> float | FloatArray | None:
        """Momentum prescribed at `step` (NaN where it is left alone), or None if never."""
        t, scalar = self._checked_time(step)
        if not self.has_momentum:
            return None
        with np.errstate(all="ignore"):
            out = self._momentum(t)
        if out is None:
            return None
        return float(out[0]) if scalar else out.reshape(np.shape(step))

    def evaluate(self, t: FloatArray) -> FloatArray:
        """Unchecked vectorized evaluation at float64 times (for adapters and composites)."""
        with np.errstate(all="ignore"):
            return self._eval(np.asarray(t, dtype=np.float64))

    def evaluate_momentum(self, t: FloatArray) -> FloatArray | None:
        """Unchecked vectorized momentum at float64 times; None when none is prescribed."""
        if not self.has_momentum:
            return None
        with np.errstate(all="ignore"):
            return self._momentum(np.asarray(t, dtype=np.float64))

    # -- serialization --------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """Plain JSON-able data; `from_config` rebuilds an equal schedule."""
        cfg: dict[str, Any] = {"type": self.name}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and _same(v, f.default):
                continue
            cfg[f.name] = _encode(v)
        return cfg

    def to_spec(self) -> str:
        """The text form, which `parse` reads back into an equal schedule."""
        from lrkit.schedules._spec import format_spec

        return format_spec(self)

    def __str__(self) -> str:
        return self.to_spec()

    # -- algebra --------------------------------------------------------------------------------
    def __rshift__(self, other: Schedule) -> Schedule:
        from lrkit.schedules._compose import Sequence

        if not isinstance(other, Schedule):
            return NotImplemented
        return Sequence((self, other))

    def __mul__(self, other: Any) -> Schedule:
        from lrkit.schedules._compose import Affine, Product

        if isinstance(other, Schedule):
            return Product((self, other))
        if _is_real(other):
            return Affine(self, scale=float(other))
        return NotImplemented

    def __rmul__(self, other: Any) -> Schedule:
        from lrkit.schedules._compose import Affine

        if _is_real(other):
            return Affine(self, scale=float(other))
        return NotImplemented

    def __add__(self, other: Any) -> Schedule:
        from lrkit.schedules._compose import Affine

        if _is_real(other):
            return Affine(self, shift=float(other))
        return NotImplemented

    __radd__ = __add__


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _encode(v: Any) -> Any:
    if isinstance(v, Schedule):
        return v.to_config()
    if isinstance(v, tuple):
        return [_encode(x) for x in v]
    return v


def _decode(v: Any, where: str) -> Any:
    if isinstance(v, Mapping):
        return from_config(v, _where=where)
    if isinstance(v, list):
        return tuple(_decode(x, f"{where}[{i}]") for i, x in enumerate(v))
    return v


def from_config(config: Mapping[str, Any], *, _where: str = "config") -> Schedule:
    """Rebuild a schedule from `Schedule.to_config()` data.

    >>> from lrkit.schedules import cosine, from_config
    >>> s = cosine(0.1, steps=100)
    >>> from_config(s.to_config()) == s
    True
    """
    if not isinstance(config, Mapping):
        raise ScheduleError(f"{_where} must be a mapping with a 'type' key, got {config!r}")
    kind = config.get("type")
    if kind not in _REGISTRY:
        raise ScheduleError(
            f"{_where}: unknown schedule type {kind!r}; valid types: {', '.join(sorted(_REGISTRY))}"
        )
    cls = _REGISTRY[kind]
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(config) - names - {"type"})
    if unknown:
        raise ScheduleError(
            f"{_where}: unknown field(s) {unknown} for {kind!r}; valid fields: {sorted(names)}"
        )
    kwargs = {k: _decode(v, f"{_where}.{k}") for k, v in config.items() if k != "type"}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ScheduleError(f"{_where}: {e}") from None


# -- argument validation shared by all schedules ------------------------------------------------


def real(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
    high_open: bool = False,
) -> float:
    """Validate a finite real number in an optional range and return it as a float."""
    if not _is_real(value):
        raise ScheduleError(f"{owner}: `{name}` must be a number, got {name}={value!r}")
    try:
        x = float(value)
    except OverflowError:
        raise ScheduleError(f"{owner}: `{name}` is too large, got {name}={value!r}") from None
    if not math.isfinite(x):
        raise ScheduleError(f"{owner}: `{name}` must be finite, got {name}={value!r}")
    if low is not None and (x <= low if low_open else x < low):
        op = ">" if low_open else ">="
        raise ScheduleError(f"{owner}: `{name}` must be {op} {low:g}, got {name}={value!r}")
    if high is not None and (x >= high if high_open else x > high):
        op = "<" if high_open else "<="
        raise ScheduleError(f"{owner}: `{name}` must be {op} {high:g}, got {name}={value!r}")
    return x


def integer(owner: str, name: str, value: Any, *, low: int = 0) -> int:
    """Validate an integer >= `low` (a float with an integral value is accepted)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ScheduleError(f"{owner}: `{name}` must be an integer, got {name}={value!r}")
    if value < low:
        raise ScheduleError(f"{owner}: `{name}` must be >= {low}, got {name}={value!r}")
    if value >= MAX_STEP:
        raise ScheduleError(f"{owner}: `{name}` must be < 2**53, got {name}={value!r}")
    return int(value)


def length(owner: str, name: str, value: Any, *, low: int = 1) -> int:
    """Validate a length (or a step) given by the user: a whole number of optimizer steps >= `low`.

    An integral float (``500.0``, or ``5e2`` in a spec) is stored as an int. Anything else is
    refused, a value below 1 with a hint: it is most likely a fraction of the training, which is
    not a unit schedules take. Lengths that composites derive (one-cycle's phases, the longer
    cycles of `repeat`) may be fractional; they are never validated here.
    """
    if isinstance(value, (float, np.floating)):
        x = real(owner, name, value, low=0.0, low_open=low > 0)
        if not x.is_integer():
            if x < 1:
                hint = (
                    "a fraction of training is not a unit schedules take: multiply it by the run's number "
                    f"of optimizer steps ({name}={x:g} of a 10000-step run is {name}={round(x * 10000)})"
                )
            else:
                hint = (
                    f"optimizer steps are counted whole: round it ({name}={math.floor(x)} or {math.ceil(x)})"
                )
            raise ScheduleError(
                f"{owner}: `{name}` must be a whole number of optimizer steps, got {name}={x!r}; {hint}"
            )
        if x >= MAX_STEP:
            raise ScheduleError(f"{owner}: `{name}` must be < 2**53, got {name}={value!r}")
        value = int(x)
    return integer(owner, name, value, low=low)


def total_length(owner: str, names: str, got: str, steps: float | None) -> None:
    """Refuse a schedule whose total length, `steps`, set by the arguments `names` (given as
    `got`), reaches `MAX_STEP`: no step from there on can be evaluated."""
    if steps is not None and not steps < MAX_STEP:  # also catches an overflow to inf
        shown = f"{steps:.0f}" if steps < 1e18 else f"{steps:.3g}"
        raise ScheduleError(
            f"{owner}: {names} must keep the total length < 2**53 steps, got {got} ({shown} steps in all)"
        )


def choice(owner: str, name: str, value: Any, options: tuple[str, ...]) -> str:
    """Validate one of a fixed set of strings."""
    if value not in options:
        raise ScheduleError(
            f"{owner}: `{name}` must be one of {', '.join(map(repr, options))}, got {name}={value!r}"
        )
    return str(value)


def schedule_arg(owner: str, name: str, value: Any) -> Schedule:
    """Validate an argument that must be a schedule; a number becomes a constant."""
    if isinstance(value, Schedule):
        return value
    if _is_real(value):
        from lrkit.schedules._primitives import Constant

        return Constant(value)
    raise ScheduleError(f"{owner}: `{name}` must be a schedule, got {name}={value!r}")


def set_field(obj: Any, name: str, value: Any) -> None:
    """Normalize a field of a frozen dataclass in `__post_init__`."""
    object.__setattr__(obj, name, value)
