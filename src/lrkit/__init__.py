"""lrkit: the learning-rate toolkit for PyTorch practitioners.

`lrkit.schedules` holds the framework-agnostic schedules (NumPy only); `lrkit.adapters.torch`
binds them to PyTorch optimizers; `lrkit.find_lr` runs the LR range test. Importing `lrkit`
never imports a deep-learning framework: torch is imported when `find_lr` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrkit import schedules
from lrkit.schedules import Schedule, ScheduleError, SpecError, from_config, lint, parse

if TYPE_CHECKING:
    from lrkit.finder import find_lr

__version__ = "0.1.0"

__all__ = [
    "Schedule",
    "ScheduleError",
    "SpecError",
    "__version__",
    "find_lr",
    "from_config",
    "lint",
    "parse",
    "schedules",
]


def __getattr__(name: str) -> Any:
    if name == "find_lr":
        from lrkit.finder import find_lr

        return find_lr
    raise AttributeError(f"module 'lrkit' has no attribute {name!r}")
