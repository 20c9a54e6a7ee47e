"""Eager argument checks shared by the optimizers: each error names the argument, the value and
what was expected."""

from __future__ import annotations

import math
from typing import Any

from lrkit.schedules import Schedule

__all__ = ["check_interval", "check_number", "interval_at"]


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a float, or a `ValueError` unless it is a real number in the stated range."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo = f"{'(' if low_open else '['}{low:g}"
        hi = f"{high:g}{')' if high_open or math.isinf(high) else ']'}"
        raise ValueError(f"{owner}: `{name}` must be a finite number in {lo}, {hi}, got {name}={value!r}")
    return float(value)


def check_interval(owner: str, name: str, value: Any) -> int | Schedule:
    """An update interval: an int >= 1 or an lrkit `Schedule` (evaluated at the step)."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{owner}: `{name}` must be an int >= 1 or an lrkit Schedule of the step, got {name}={value!r}"
        )
    return value


def interval_at(owner: str, name: str, interval: int | Schedule, step: int) -> int:
    """The interval in steps at `step`: the int itself, or the schedule's value rounded."""
    if isinstance(interval, int):
        return interval
    value = interval(step)
    if not (math.isfinite(value) and round(value) >= 1):
        raise ValueError(
            f"{owner}: the `{name}` schedule {interval} gave {value!r} at step {step}; "
            f"an interval must be >= 1 step"
        )
    return round(value)
