"""Argument checks shared by the library's entry points."""

from __future__ import annotations

import math
from typing import Any


def positive_or_none(value: Any, name: str, where: str = "") -> float | None:
    """`value` as a float when it is a finite number > 0, None when it is None; anything else
    raises a `ValueError` that names the argument (prefixed with `where`, e.g. ``"fit: "``).

    >>> positive_or_none(1, "clip_grad_norm"), positive_or_none(None, "clip_grad_norm")
    (1.0, None)
    >>> positive_or_none(0.0, "clip_grad_norm", "fit: ")
    Traceback (most recent call last):
    ValueError: fit: `clip_grad_norm` must be a finite number > 0 or None, got clip_grad_norm=0.0
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{where}`{name}` must be a finite number > 0 or None, got {name}={value!r}")
    return float(value)
