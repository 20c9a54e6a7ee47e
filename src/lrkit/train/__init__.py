"""A small, honest training loop for `lrkit.tasks.Task`: `fit`.

Schedules (including reduce-on-plateau), early stopping, atomic checkpoints that resume bit for
bit, a progress bar, and a `History` of every step and epoch.

>>> from lrkit.tasks import get
>>> from lrkit.train import EarlyStopping, fit
>>> h = fit(get("logreg-digits"), "adam", "warmup(10) >> cosine(1e-2, steps=58)", epochs=2,
...         early_stopping=EarlyStopping(patience=3))
>>> h.status, [e["epoch"] for e in h.epochs], h.restored_epoch
('completed', [1, 2], 2)
"""

from lrkit.train._checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from lrkit.train._compare import KEYWORD_SCHEDULES, compare
from lrkit.train._early import MONITORS, EarlyStopping
from lrkit.train._explain import explain, interpret
from lrkit.train._fit import fit
from lrkit.train._history import HISTORY_FORMAT, STATUSES, History
from lrkit.train._range import range_test
from lrkit.train._runs import CompareResult, Run, format_metric
from lrkit.train._schedule import ScheduleFitWarning

__all__ = [
    "CHECKPOINT_FORMAT",
    "KEYWORD_SCHEDULES",
    "CompareResult",
    "Run",
    "ScheduleFitWarning",
    "compare",
    "explain",
    "format_metric",
    "interpret",
    "range_test",
    "HISTORY_FORMAT",
    "MONITORS",
    "STATUSES",
    "CheckpointError",
    "EarlyStopping",
    "History",
    "fit",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
