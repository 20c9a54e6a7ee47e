"""lrkit: the learning-rate toolkit for PyTorch practitioners.

`lrkit.schedules` holds the framework-agnostic schedules (NumPy only); `lrkit.adapters.torch`
binds them to PyTorch optimizers. Importing `lrkit` never imports a deep-learning framework.
"""

from lrkit import schedules
from lrkit.schedules import Schedule, ScheduleError, SpecError, from_config, lint, parse

__version__ = "0.1.0"

__all__ = [
    "Schedule",
    "ScheduleError",
    "SpecError",
    "__version__",
    "from_config",
    "lint",
    "parse",
    "schedules",
]
