"""Search spaces: typed parameters (log-uniform, uniform, int, categorical), from Python or YAML.

A space is a plain ``dict[str, Param]``. `parse_space` reads the same thing from a mapping (a
YAML file's contents), so a space can live next to an experiment:

.. code-block:: yaml

    lr: {type: log, low: 1.0e-4, high: 1.0}
    optimizer: {type: choice, values: [momentum, adam]}
    schedule: {type: choice, values: [constant, onecycle, "cosine(0.1, steps=100)"]}
    weight_decay: {type: log, low: 1.0e-6, high: 1.0e-2}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = [
    "Choice",
    "Float",
    "Int",
    "LogFloat",
    "Param",
    "SpaceError",
    "grid_points",
    "load_space",
    "parse_space",
    "validate_space",
]

#: Grid points a continuous parameter gets when the grid strategy needs a finite set.
DEFAULT_GRID_POINTS = 16


class SpaceError(ValueError):
    """A malformed search space (a `ValueError` naming the parameter and what is wrong)."""


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpaceError(f"{where}: `{key}` must be a finite number, got {key}={value!r}")
    return float(value)


def _number_in(value: Any, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and low <= value <= high


@dataclass(frozen=True)
class Param:
    """One searchable parameter; subclasses say how it is drawn."""

    def check(self, name: str) -> None:
        """Raise `SpaceError` when the parameter called `name` is malformed."""

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw the parameter's value for an Optuna trial."""
        raise NotImplementedError

    def grid(self, points: int) -> list[Any]:
        """A finite set of values for grid search."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """Whether `value` is one the parameter can take."""
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        """The parameter as a plain mapping (the YAML form)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LogFloat(Param):
    """A float drawn uniformly in log space from ``[low, high]``, with ``0 < low < high``.

    The natural scale of learning rates and weight decay: 1e-4 to 1e-3 is as wide as 1e-2 to 1e-1.

    >>> LogFloat(1e-4, 1e-1).grid(4)
    [0.0001, 0.001, 0.01, 0.1]
    """

    low: float
    high: float

    def check(self, name: str) -> None:
        where = f"search space parameter {name!r} (log)"
        low, high = _number(where, "low", self.low), _number(where, "high", self.high)
        if low <= 0:
            raise SpaceError(f"{where}: a log range must be > 0 at both ends, got low={self.low!r}")
        if low >= high:
            raise SpaceError(f"{where}: `low` must be < `high`, got low={self.low!r}, high={self.high!r}")

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def grid(self, points: int) -> list[Any]:
        values = np.geomspace(self.low, self.high, points)
        return [min(max(float(f"{v:.6g}"), self.low), self.high) for v in values]

    def contains(self, value: Any) -> bool:
        return _number_in(value, self.low, self.high)

    def to_config(self) -> dict[str, Any]:
        return {"type": "log", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Float(Param):
    """A float drawn uniformly from ``[low, high]``, optionally on a `step` grid.

    >>> Float(0.8, 0.99).grid(3)
    [0.8, 0.895, 0.99]
    """

    low: float
    high: float
    step: float | None = None

    def check(self, name: str) -> None:
        where = f"search space parameter {name!r} (float)"
        low, high = _number(where, "low", self.low), _number(where, "high", self.high)
        if low >= high:
            raise SpaceError(f"{where}: `low` must be < `high`, got low={self.low!r}, high={self.high!r}")
        if self.step is not None and _number(where, "step", self.step) <= 0:
            raise SpaceError(f"{where}: `step` must be > 0, got step={self.step!r}")

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, step=self.step)

    def grid(self, points: int) -> list[Any]:
        if self.step is not None:
            values = np.arange(self.low, self.high + self.step / 2, self.step)
        else:
            values = np.linspace(self.low, self.high, points)
        return [min(max(float(f"{v:.6g}"), self.low), self.high) for v in values]

    def contains(self, value: Any) -> bool:
        return _number_in(value, self.low, self.high)

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "float", "low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Int(Param):
    """An int drawn from ``[low, high]`` (both included), uniformly or in log space.

    >>> Int(16, 128, log=True).grid(4)
    [16, 32, 64, 128]
    """

    low: int
    high: int
    log: bool = False

    def check(self, name: str) -> None:
        where = f"search space parameter {name!r} (int)"
        for key, v in (("low", self.low), ("high", self.high)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise SpaceError(f"{where}: `{key}` must be an int, got {key}={v!r}")
        if self.low >= self.high:
            raise SpaceError(f"{where}: `low` must be < `high`, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low <= 0:
            raise SpaceError(f"{where}: a log range must be > 0 at both ends, got low={self.low!r}")

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def grid(self, points: int) -> list[Any]:
        if self.high - self.low + 1 <= points:
            return list(range(self.low, self.high + 1))
        values = (
            np.geomspace(self.low, self.high, points)
            if self.log
            else np.linspace(self.low, self.high, points)
        )
        return sorted({round(float(v)) for v in values})

    def contains(self, value: Any) -> bool:
        return _number_in(value, self.low, self.high)

    def to_config(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice(Param):
    """One of a list of values (strings, numbers, booleans): optimizers, schedule specs, batch sizes.

    >>> Choice(("momentum", "adam")).grid(16)
    ['momentum', 'adam']
    """

    values: tuple[Any, ...]

    def check(self, name: str) -> None:
        where = f"search space parameter {name!r} (choice)"
        if not isinstance(self.values, tuple | list) or not self.values:
            raise SpaceError(f"{where}: `values` must be a non-empty list, got values={self.values!r}")
        for v in self.values:
            if v is not None and not isinstance(v, str | int | float | bool):
                raise SpaceError(f"{where}: every value must be a string, number, boolean or null, got {v!r}")
        if len(set(map(repr, self.values))) != len(self.values):
            raise SpaceError(f"{where}: `values` has duplicates: {list(self.values)!r}")

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def grid(self, points: int) -> list[Any]:
        return list(self.values)

    def contains(self, value: Any) -> bool:
        return value in self.values

    def to_config(self) -> dict[str, Any]:
        return {"type": "choice", "values": list(self.values)}


#: The ``type`` names of the YAML form.
TYPES: dict[str, type[Param]] = {"log": LogFloat, "float": Float, "int": Int, "choice": Choice}


def validate_space(space: Mapping[str, Param]) -> dict[str, Param]:
    """Check every parameter of `space` and return it as a dict.

    >>> validate_space({"lr": LogFloat(0.0, 1.0)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrkit.tune._space.SpaceError: search space parameter 'lr' (log): a log range must be > 0 ...
    """
    if not isinstance(space, Mapping):
        raise SpaceError(
            f"a search space must be a mapping of names to parameters, got {type(space).__name__}"
        )
    if not space:
        raise SpaceError("the search space is empty: give at least one parameter (for example lr)")
    for name, param in space.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SpaceError(f"search space parameter names must be identifiers, got {name!r}")
        if not isinstance(param, Param):
            raise SpaceError(
                f"search space parameter {name!r}: expected a LogFloat, Float, Int or Choice, "
                f"got {type(param).__name__}"
            )
        param.check(name)
    return dict(space)


def parse_space(data: Any, *, source: str = "search space") -> dict[str, Param]:
    """A space from its mapping form: ``{name: {type: log|float|int|choice, ...}}``.

    A bare list is a choice and a bare scalar is a fixed value (a one-value choice);
    ``{type: float, log: true}`` is the same as ``{type: log}``.

    >>> parse_space({"lr": {"type": "log", "low": 1e-4, "high": 1.0}, "optimizer": ["sgd", "adam"]})
    {'lr': LogFloat(low=0.0001, high=1.0), 'optimizer': Choice(values=('sgd', 'adam'))}
    >>> parse_space({"lr": {"type": "normal"}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrkit.tune._space.SpaceError: search space: parameter 'lr' has an unknown type 'normal'; ...
    """
    if not isinstance(data, Mapping):
        raise SpaceError(f"{source}: expected a mapping of parameter names, got {type(data).__name__}")
    space: dict[str, Param] = {}
    for name, spec in data.items():
        if isinstance(spec, list | tuple):
            space[str(name)] = Choice(tuple(spec))
            continue
        if not isinstance(spec, Mapping):
            space[str(name)] = Choice((spec,))
            continue
        kind = spec.get("type")
        if kind not in TYPES:
            raise SpaceError(
                f"{source}: parameter {name!r} has an unknown type {kind!r}; expected one of "
                f"{', '.join(TYPES)}"
            )
        fields = {k: v for k, v in spec.items() if k != "type"}
        if kind == "float" and "log" in fields:
            kind = _float_kind(source, name, fields)
        if kind == "choice" and isinstance(fields.get("values"), list):
            fields["values"] = tuple(fields["values"])
        try:
            space[str(name)] = TYPES[kind](**fields)
        except TypeError:
            expected = {
                "log": "low, high",
                "float": "low, high and optionally step or log",
                "int": "low, high and optionally log",
                "choice": "values",
            }[kind]
            raise SpaceError(
                f"{source}: parameter {name!r} of type {kind!r} takes {expected}, got "
                f"{', '.join(map(str, fields)) or 'nothing'}"
            ) from None
    if source == "search space":
        return validate_space(space)
    try:
        return validate_space(space)
    except SpaceError as e:
        raise SpaceError(f"{source}: {e}") from None


def _float_kind(source: str, name: Any, fields: dict[str, Any]) -> str:
    """``{type: float, log: true}`` is the log type (as in Optuna's ``suggest_float(log=True)``)."""
    log = fields.pop("log")
    if not isinstance(log, bool):
        raise SpaceError(f"{source}: parameter {name!r}: `log` must be true or false, got log={log!r}")
    if log and fields.get("step") is not None:
        step = fields["step"]
        raise SpaceError(
            f"{source}: parameter {name!r}: `step` cannot be combined with log: true, got step={step!r}"
        )
    return "log" if log else "float"


def load_space(path: str | Path) -> dict[str, Param]:
    """A space from a YAML (or JSON) file, read with ``yaml.safe_load``."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpaceError(f"cannot read the search space file {str(p)!r}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"the search space file {str(p)!r} is not valid YAML: {e}") from None
    return parse_space(data, source=f"search space file {str(p)!r}")


def grid_points(space: Mapping[str, Param], points: int = DEFAULT_GRID_POINTS) -> dict[str, list[Any]]:
    """The grid the grid strategy walks: every parameter's finite set of values.

    >>> grid_points({"lr": LogFloat(1e-3, 1e-1)}, points=3)
    {'lr': [0.001, 0.01, 0.1]}
    """
    return {name: param.grid(points) for name, param in space.items()}
