"""Tuning: grid, random and Bayesian search of the LR (and friends) with cross-validation,
pruning and a final refit, on Optuna; in memory, in a SQLite file, or on PostgreSQL for many
machines.

>>> from lrkit.tune import LogFloat, tune
>>> result = tune("logreg-digits", {"lr": LogFloat(1e-3, 1.0)}, strategy="random", trials=3, epochs=2)
>>> len(result.trials), result.best_params["lr"] > 0, 0.8 < result.test_metric <= 1.0
(3, True, True)

Needs Optuna: ``pip install 'lrkit[tune]'``.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("optuna") is None:  # fail late, with the extra to install
    raise ImportError("lrkit.tune needs Optuna and psycopg: pip install 'lrkit[tune]'")

from lrkit.tune._api import load_result, tune
from lrkit.tune._folds import SplitTask, folds
from lrkit.tune._result import TrialRecord, TuneResult
from lrkit.tune._space import Choice, Float, Int, LogFloat, Param, SpaceError, load_space, parse_space
from lrkit.tune._storage import StorageError, mask
from lrkit.tune._tune import PRUNERS, STRATEGIES

__all__ = [
    "PRUNERS",
    "STRATEGIES",
    "Choice",
    "Float",
    "Int",
    "LogFloat",
    "Param",
    "SpaceError",
    "SplitTask",
    "StorageError",
    "TrialRecord",
    "TuneResult",
    "folds",
    "load_result",
    "load_space",
    "mask",
    "parse_space",
    "tune",
]
