"""Learning-rate schedules: pure, closed-form functions of the optimizer step (NumPy only).

Every schedule is a small frozen dataclass: ``s(step)`` for an int gives a float, for an integer
array an array; ``s.to_config()`` / `from_config` and ``str(s)`` / `parse` round-trip it.
Schedules compose: ``a >> b`` (one after the other, in relative time), ``0.5 * s``, ``s * t``,
``s + floor``, `clip`, `repeat`, `horizon`, `noise`, `with_momentum`, and `plateau` for
metric-driven reduction.

>>> from lrkit.schedules import parse
>>> s = parse("warmup(10) >> cosine(0.1, steps=90)")
>>> round(s(0), 6), s(10), s(100)
(0.009091, 0.1, 0.0)
"""

from lrkit.schedules._base import (
    HorizonError,
    Schedule,
    ScheduleError,
    from_config,
    registry,
)
from lrkit.schedules._compose import (
    Affine,
    Clip,
    Horizon,
    Noise,
    Product,
    Repeat,
    Sequence,
    Warmup,
    WithMomentum,
    clip,
    horizon,
    noise,
    repeat,
    warmup,
    with_momentum,
)
from lrkit.schedules._lint import LintWarning, lint
from lrkit.schedules._plateau import Plateau, plateau
from lrkit.schedules._primitives import (
    Constant,
    Cosine,
    Exponential,
    InverseTime,
    Linear,
    MultiStep,
    OneMinusSqrt,
    Polynomial,
    StepDecay,
    constant,
    cosine,
    exponential,
    inverse_time,
    linear,
    multistep,
    one_minus_sqrt,
    polynomial,
    step,
)
from lrkit.schedules._recipes import (
    Cyclic,
    InverseSqrt,
    OneCycle,
    WarmRestarts,
    WarmupStableDecay,
    cyclic,
    inverse_sqrt,
    onecycle,
    sgdr,
    wsd,
)
from lrkit.schedules._spec import SpecError, parse, spec_names

__all__ = [
    "Affine",
    "Clip",
    "Constant",
    "Cosine",
    "Cyclic",
    "Exponential",
    "Horizon",
    "HorizonError",
    "InverseSqrt",
    "InverseTime",
    "Linear",
    "LintWarning",
    "MultiStep",
    "Noise",
    "OneCycle",
    "OneMinusSqrt",
    "Plateau",
    "Polynomial",
    "Product",
    "Repeat",
    "Schedule",
    "ScheduleError",
    "Sequence",
    "SpecError",
    "StepDecay",
    "WarmRestarts",
    "Warmup",
    "WarmupStableDecay",
    "WithMomentum",
    "clip",
    "constant",
    "cosine",
    "cyclic",
    "exponential",
    "from_config",
    "horizon",
    "inverse_sqrt",
    "inverse_time",
    "linear",
    "lint",
    "multistep",
    "noise",
    "one_minus_sqrt",
    "onecycle",
    "parse",
    "plateau",
    "polynomial",
    "registry",
    "repeat",
    "sgdr",
    "spec_names",
    "step",
    "warmup",
    "with_momentum",
    "wsd",
]
