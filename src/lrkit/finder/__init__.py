"""The LR range test: `find_lr`, its result, and the suggestion rules (pure NumPy functions)."""

from lrkit.finder._api import find_lr
from lrkit.finder._result import FinderResult, Verification
from lrkit.finder._rules import (
    FLAT_DECADES,
    RULES,
    below_divergence,
    divergence_cap,
    fell,
    lrkit_constant,
    lrkit_peak,
    minimum,
    minimum_div10,
    progress_interval,
    rule,
    slide,
    smooth,
    steepest,
    valley,
)
from lrkit.finder._snapshot import Snapshot
from lrkit.finder._sweep import DivergenceMonitor

__all__ = [
    "FLAT_DECADES",
    "RULES",
    "DivergenceMonitor",
    "FinderResult",
    "Snapshot",
    "Verification",
    "below_divergence",
    "divergence_cap",
    "fell",
    "find_lr",
    "lrkit_constant",
    "lrkit_peak",
    "minimum",
    "minimum_div10",
    "progress_interval",
    "rule",
    "slide",
    "smooth",
    "steepest",
    "valley",
]
