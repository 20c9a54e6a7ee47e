"""The results of `compare` and `explain`: one `Run` per label, its seeds' histories, and the
`CompareResult` that holds them, with its table and JSON form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrkit.tasks import Task
from lrkit.tasks._base import task_epochs
from lrkit.train._history import History

__all__ = ["CompareResult", "Run", "format_metric"]


@dataclass(repr=False)
class Run:
    """One run label: an optimizer, a schedule and an LR, trained once per seed.

    Attributes:
        label: the name of the run in tables, legends and ``histories.json``.
        optimizer: the optimizer's registry name.
        schedule: the schedule spec given to `fit`.
        lr: the LR given to `fit` (the constant LR, or the peak of ``"onecycle"``); None for a
            spec that sets its own LRs.
        histories: one `History` per seed, in seed order.
        note: one line of interpretation (`explain` writes it; empty otherwise).
    """

    label: str
    optimizer: str
    schedule: str
    lr: float | None
    histories: list[History]
    note: str = ""

    @property
    def metrics(self) -> list[float]:
        """The final validation metric of every seed (NaN where a run diverged)."""
        return [float(h.final_metric) if h.final_metric is not None else math.nan for h in self.histories]

    def __repr__(self) -> str:
        return (
            f"Run({self.label!r}, seeds={len(self.histories)}, metric_mean={self.metric_mean:.4g}, "
            f"diverged={self.diverged})"
        )

    @property
    def diverged(self) -> int:
        """How many seeds diverged."""
        return sum(h.status == "diverged" for h in self.histories)

    @property
    def metric_mean(self) -> float:
        """Mean final metric over the seeds that did not diverge (NaN when all did)."""
        ok = [m for m in self.metrics if math.isfinite(m)]
        return float(np.mean(ok)) if ok else math.nan

    @property
    def metric_std(self) -> float:
        """Standard deviation (ddof=0) of the final metric over the seeds that did not diverge."""
        ok = [m for m in self.metrics if math.isfinite(m)]
        return float(np.std(ok)) if ok else math.nan

    @property
    def seconds(self) -> float:
        """Mean wall time of one training run (one seed)."""
        return float(np.mean([h.seconds for h in self.histories])) if self.histories else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the fields, the summary, and every history as `History.to_dict`."""
        return {
            "label": self.label,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "lr": self.lr,
            "note": self.note,
            "final_metric_mean": _json_float(self.metric_mean),
            "final_metric_std": _json_float(self.metric_std),
            "diverged": self.diverged,
            "seconds": self.seconds,
            "histories": [h.to_dict() for h in self.histories],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """Rebuild a run written by `to_dict`."""
        return cls(
            label=str(data["label"]),
            optimizer=str(data["optimizer"]),
            schedule=str(data["schedule"]),
            lr=None if data.get("lr") is None else float(data["lr"]),
            histories=[History.from_dict(h) for h in data["histories"]],
            note=str(data.get("note", "")),
        )


@dataclass(repr=False)
class CompareResult:
    """The runs of `compare` or `explain`, with what is needed to plot and tabulate them.

    Attributes:
        task: the task's name.
        metric: the task's validation metric (``"accuracy"``, ``"rel_mse"``, ...).
        mode: ``"max"`` when a higher metric is better, ``"min"`` when lower is.
        epochs: epochs of every run.
        steps_per_epoch: optimizer steps per epoch (to place epoch-level values on the step axis).
        runs: one `Run` per label, in the order the combinations were given.
        suggestions: the range test's suggestion for each optimizer and target schedule
            (``"adam/constant"``), when LRs came from it (for a learning-rate-free optimizer,
            which the range test refuses, its default multiplier).
        lr_source: where the LRs came from: ``"range test"``, ``"default"`` or ``"given"``.
        seconds: wall time of the whole comparison.
        kind: ``"compare"`` or ``"explain"``.
    """

    task: str
    metric: str
    mode: str
    epochs: int
    steps_per_epoch: int
    runs: list[Run]
    suggestions: dict[str, float] = field(default_factory=dict)
    lr_source: str = "given"
    seconds: float = 0.0
    kind: str = "compare"

    def __repr__(self) -> str:
        """The task and each run's mean final metric; the histories are in `runs`."""
        runs = ", ".join(f"{r.label!r}: {r.metric_mean:.4g}" for r in self.runs)
        return (
            f"CompareResult(task={self.task!r}, metric={self.metric!r}, epochs={self.epochs}, "
            f"runs={{{runs}}})"
        )

    def best(self) -> Run | None:
        """The run with the best mean final metric (None when every run diverged)."""
        ok = [r for r in self.runs if math.isfinite(r.metric_mean)]
        if not ok:
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        return max(ok, key=lambda r: sign * r.metric_mean)

    def histories(self) -> list[History]:
        """Every history, run by run."""
        return [h for r in self.runs for h in r.histories]

    def table_markdown(self) -> str:
        """A Markdown table with one row per run: LR, final metric mean ± std, divergences, time."""
        seeds = max((len(r.histories) for r in self.runs), default=0)
        notes = any(r.note for r in self.runs)
        head = ["run", "optimizer", "schedule", "lr", f"final val {self.metric} (mean ± std)", "diverged"]
        head += ["seconds per run"] + (["interpretation"] if notes else [])
        lines = [
            f"Task `{self.task}`, {self.epochs} epochs, {seeds} seed(s) per run; LRs: {self.lr_source}.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join("---" for _ in head) + "|",
        ]
        for r in self.runs:
            row = [
                _md(r.label),
                _md(r.optimizer),
                _md(f"`{r.schedule}`"),
                "-" if r.lr is None else f"{r.lr:.3g}",
                format_metric(r),
                f"{r.diverged}/{len(r.histories)}",
                f"{r.seconds:.2f}",
            ] + ([_md(r.note)] if notes else [])
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data (``histories.json``); `from_dict` rebuilds the result."""
        return {
            "kind": self.kind,
            "task": self.task,
            "metric": self.metric,
            "mode": self.mode,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "lr_source": self.lr_source,
            "suggestions": {k: _json_float(v) for k, v in self.suggestions.items()},
            "seconds": self.seconds,
            "runs": [r.to_dict() for r in self.runs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareResult:
        """Rebuild a result written by `to_dict`."""
        return cls(
            task=str(data["task"]),
            metric=str(data["metric"]),
            mode=str(data["mode"]),
            epochs=int(data["epochs"]),
            steps_per_epoch=int(data["steps_per_epoch"]),
            runs=[Run.from_dict(r) for r in data["runs"]],
            suggestions={
                k: math.nan if v is None else float(v) for k, v in data.get("suggestions", {}).items()
            },
            lr_source=str(data.get("lr_source", "given")),
            seconds=float(data.get("seconds", 0.0)),
            kind=str(data.get("kind", "compare")),
        )

    @classmethod
    def from_histories(
        cls, task: Task, histories: Sequence[History], *, epochs: int | None = None
    ) -> CompareResult:
        """A result holding given histories, one run per (optimizer, schedule) pair (for plots)."""
        runs: dict[tuple[str, str], Run] = {}
        for h in histories:
            key = (str(h.optimizer), str(h.schedule))
            if key not in runs:
                lr = h.lrs[0] if h.lrs else None
                runs[key] = Run(f"{key[0]}, {key[1]}", key[0], key[1], lr, [])
            runs[key].histories.append(h)
        return cls(
            task=task.name or type(task).__name__,
            metric=task.metric,
            mode=task.mode,
            epochs=task_epochs(task) if epochs is None else epochs,
            steps_per_epoch=task.steps_per_epoch(),
            runs=list(runs.values()),
            seconds=float(sum(h.seconds for h in histories)),
        )


def format_metric(run: Run) -> str:
    """``"0.953 ± 0.004"``, ``"diverged"`` when every seed diverged."""
    if not math.isfinite(run.metric_mean):
        return "diverged"
    if len(run.histories) - run.diverged <= 1:
        return f"{run.metric_mean:.4g}"
    return f"{run.metric_mean:.4g} ± {run.metric_std:.2g}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
