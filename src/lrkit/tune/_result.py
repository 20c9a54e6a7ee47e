"""`TuneResult`: a study's trials, its best configuration and the refit model's test score."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lrkit._words import counted

__all__ = ["TrialRecord", "TuneResult", "from_study"]

RESULT_FORMAT = "lrkit.TuneResult/1"


def _num(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _plain(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


@dataclass
class TrialRecord:
    """One trial of a study.

    Attributes:
        number: Optuna's trial number (unique within the study).
        state: ``"COMPLETE"``, ``"PRUNED"``, ``"FAIL"``, ``"RUNNING"`` or ``"WAITING"``.
        value: the fold mean of the final validation metric (None unless complete).
        params: the trial's parameters.
        epochs: epochs it trained, summed over folds (its compute).
        seconds: wall time from start to end (None while running).
        worker: ``host:pid`` of the process that ran it.
        retried_from: the number of the trial it re-runs after that trial's worker died.
        diverged: folds whose training diverged.
    """

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    epochs: int = 0
    seconds: float | None = None
    worker: str = ""
    retried_from: int | None = None
    diverged: int = 0


@dataclass(repr=False)
class TuneResult:
    """What a tuning run found.

    Attributes:
        study: the study's name; storage: its URL with the password hidden (None: in memory).
        task, metric, mode: what was tuned and how it is scored (``mode`` ``"max"`` or ``"min"``).
        strategy, pruner, cv, epochs: how.
        trials: every trial of the study (also those other machines ran).
        best: the best complete trial (None when none completed).
        importance: each parameter's share of the variation of the score (fANOVA), when computable.
        test_metric: the refit model's score on the test split (None without a refit).
        refit_seconds: the refit's wall time; checkpoint: where the refit model was saved.
    """

    study: str
    storage: str | None
    task: str
    metric: str
    mode: str
    strategy: str
    pruner: str
    cv: int | None
    epochs: int
    trials: list[TrialRecord]
    best: TrialRecord | None
    importance: dict[str, float] | None = None
    test_metric: float | None = None
    refit_seconds: float | None = None
    checkpoint: str | None = None
    space: dict[str, Any] = field(default_factory=dict)

    @property
    def best_params(self) -> dict[str, Any]:
        """The best trial's parameters (empty when no trial completed)."""
        return {} if self.best is None else dict(self.best.params)

    @property
    def best_value(self) -> float:
        """The best trial's value (NaN when no trial completed)."""
        return math.nan if self.best is None or self.best.value is None else self.best.value

    @property
    def epochs_spent(self) -> int:
        """Epochs trained by all trials together: the study's compute."""
        return sum(t.epochs for t in self.trials)

    def count(self, state: str) -> int:
        """How many trials are in `state`."""
        return sum(t.state == state for t in self.trials)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready: non-finite numbers become None)."""
        d: dict[str, Any] = _plain(asdict(self))
        d["format"] = RESULT_FORMAT
        return d

    def to_json(self, path: str | Path | None = None) -> str:
        """The result as JSON, also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def __repr__(self) -> str:
        """The study in a line (`summary`); every trial is in `trials`."""
        return f"TuneResult({self.summary()})"

    def summary(self) -> str:
        """One line: the best configuration and what it cost."""
        if self.best is None:
            return f"study {self.study!r}: no trial completed ({counted(len(self.trials), 'trial')})"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in self.best.params.items())
        line = (
            f"study {self.study!r}: best {self.metric} {self.best_value:.4g} (trial {self.best.number}: "
            f"{params}); {counted(len(self.trials), 'trial')}, {self.count('PRUNED')} pruned, "
            f"{counted(self.epochs_spent, 'epoch')}"
        )
        if self.test_metric is not None:
            refit = f"{self.metric} {self.test_metric:.4g}" if math.isfinite(self.test_metric) else "diverged"
            line += f"; refit test {refit}"
        return line


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _record(t: Any) -> TrialRecord:
    seconds = None
    if t.datetime_start is not None and t.datetime_complete is not None:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds()
    retried = t.system_attrs.get("failed_trial")
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        value=None if t.value is None or t.state.name != "COMPLETE" else float(t.value),
        params=dict(t.params),
        epochs=int(t.user_attrs.get("epochs", 0)),
        seconds=seconds,
        worker=str(t.user_attrs.get("worker", "")),
        retried_from=None if retried is None else int(retried),
        diverged=int(t.user_attrs.get("diverged", 0)),
    )


def from_study(study: Any, storage: str | None, *, importance: bool = True) -> TuneResult:
    """A `TuneResult` read from an Optuna study that lrkit created (no refit)."""
    plan = study.user_attrs.get("lrkit", {})
    trials = [_record(t) for t in study.get_trials(deepcopy=False)]
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    mode = plan.get("mode", "max")
    best = None
    if done:
        best = max(done, key=lambda t: t.value) if mode == "max" else min(done, key=lambda t: t.value)  # type: ignore[arg-type,return-value]
    imp = None
    if importance and len(done) >= 4 and len(plan.get("space", {})) >= 2:
        try:
            import optuna

            imp = {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
        except (RuntimeError, ValueError, ImportError):
            imp = None
    return TuneResult(
        study=study.study_name,
        storage=storage,
        task=str(plan.get("task", "")),
        metric=str(plan.get("metric", "value")),
        mode=mode,
        strategy=str(plan.get("strategy", "")),
        pruner=str(plan.get("pruner", "")),
        cv=plan.get("cv"),
        epochs=int(plan.get("epochs", 0)),
        trials=trials,
        best=best,
        importance=imp,
        space=dict(plan.get("space", {})),
    )
