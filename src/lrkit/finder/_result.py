"""`FinderResult`: what a range test found, with its suggestions, uncertainty, plot and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit._io import save_figure, write_text_atomic
from lrkit.finder._rules import noise
from lrkit.schedules import Schedule, constant, cyclic, onecycle

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMAT = "lrkit.FinderResult/1"
#: The rule behind `FinderResult.suggestion`, per target schedule.
TARGET_RULE = {"constant": "lrkit", "onecycle": "lrkit-peak"}
#: What the suggestion is, per target schedule, in words.
TARGET_WORDS = {"constant": "a constant LR", "onecycle": "the peak of a one-cycle schedule"}


def _short(values: list[float]) -> str:
    return f"[{', '.join(f'{v:.3g}' for v in values)}]"


@dataclass(repr=False)
class Verification:
    """Short training runs of candidate LRs from the same initial weights."""

    candidates: list[float]
    scores: list[float]  # lower is better: validation loss, or the final training loss
    on: str  # "validation loss" or "training loss"
    chosen: float  # the suggestion: `best` times `horizon_factor`
    steps: int  # optimizer steps per candidate
    total_steps: int
    seconds: float
    vectorized: bool
    best: float = math.nan  # the smallest candidate tied with the best score
    horizon_factor: float = 1.0  # correction for runs shorter than the planned training
    #: standard error of each score's difference from the best score (paired: same batches,
    #: same validation examples); a candidate within it of the best is tied with the best
    errors: list[float] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"Verification(on={self.on!r}, candidates={_short(self.candidates)}, "
            f"scores={_short(self.scores)}, best={self.best:.3g}, horizon_factor={self.horizon_factor:.3g}, "
            f"chosen={self.chosen:.3g}, steps={self.steps}, vectorized={self.vectorized})"
        )


@dataclass(repr=False)
class FinderResult:
    """The outcome of `find_lr`.

    Attributes:
        lrs: the LR of each recorded sweep step.
        losses: the raw training loss at each of them.
        smoothed: the loss smoothed without lag (what the rules read).
        suggestion: lrkit's recommended LR for `target` (NaN when the curve shows nothing).
        suggestions: every rule's pick, by rule name.
        interval: (low, high) LRs of the descent: from where the smoothed loss starts to fall
            to its lowest point (`progress_interval`).
        target: the schedule the suggestion is for: "constant" or "onecycle" (a peak).
        status: "ok", "diverged" (stopped early when the loss blew up: normal), "nan-at-start"
            (the loss was not finite from the first step), or "flat" (the loss never fell: the
            suggestion is then `FLAT_DECADES` below where the sweep diverged, or NaN if it did not).
        stopped_at: index of the step where divergence was detected (None if never).
        seeds: per-seed suggestions when the sweep was repeated, and `spread` their range in
            decades of LR.
        verification: the verification runs, if requested.
        warnings: what the user should know (rules that disagree, a short sweep, ...).
        steps: optimizer steps the sweep(s) applied; `seconds` their wall time.
        repeats: the repeated sweeps' curves, by seed (``{"lrs": [...], "smoothed": [...]}``;
            the first sweep's curve is `lrs` and `smoothed`), when the sweep was repeated.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    suggestions: dict[str, float]
    interval: tuple[float, float]
    target: str
    status: str
    stopped_at: int | None = None
    seeds: dict[int, float] = field(default_factory=dict)
    spread: float = 0.0
    verification: Verification | None = None
    warnings: list[str] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    repeats: dict[int, dict[str, list[float]]] = field(default_factory=dict)

    def __repr__(self) -> str:
        """What the test found, in a line or two; the curve is in `lrs`, `losses`, `smoothed`."""
        parts = [
            f"target={self.target!r}",
            f"suggestion={self.suggestion:.3g}",
            f"status={self.status!r}",
            f"interval=({self.interval[0]:.3g}, {self.interval[1]:.3g})",
            f"points={len(self.lrs)}",
        ]
        if self.seeds:
            parts.append(f"seeds={{{', '.join(f'{k}: {v:.3g}' for k, v in self.seeds.items())}}}")
        if self.verification is not None:
            parts.append(f"verification={self.verification!r}")
        if self.warnings:
            parts.append(f"warnings={self.warnings!r}")
        return f"FinderResult({', '.join(parts)})"

    # -- schedules built from the result -------------------------------------------------------
    def schedule(self, kind: str = "auto", *, steps: int | None = None) -> Schedule:
        """A schedule that uses what the test found.

        A constant LR and the peak of a one-cycle schedule are different answers (the peak is
        reached after a warmup and held briefly, so it may be higher). A `kind` that is the
        result's `target` takes the `suggestion`. The other kind takes the curve's reading for
        it (``suggestions["lrkit"]`` or ``suggestions["lrkit-peak"]``) when the result was not
        verified, and is refused when it was: verification trained its candidates under the
        target's schedule, and chose the suggestion for that schedule only.

        Args:
            kind: ``"constant"``, ``"onecycle"`` (the LR as its peak; needs `steps`),
                ``"cyclic"`` (Smith's bounds: the interval, with a half-cycle of ``steps // 8``
                or 2000 steps), or ``"auto"`` (the result's `target`).
            steps: the training length in optimizer steps (one-cycle and cyclic).
        """
        if kind not in ("auto", *TARGET_RULE, "cyclic"):
            raise ValueError(f"`kind` must be 'auto', 'constant', 'onecycle' or 'cyclic', got kind={kind!r}")
        if not (math.isfinite(self.suggestion) and self.suggestion > 0):
            raise ValueError(
                f"the range test found no usable LR (status={self.status!r}); no schedule to build"
            )
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(
                f"`steps` must be an integer >= 1 (the training length) or None, got steps={steps!r}"
            )
        kind = self.target if kind == "auto" else kind
        if kind == "cyclic":
            lo, hi = self.interval
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"no usable interval for a cyclic schedule: {self.interval}")
            half = max(1, steps // 8) if steps is not None else 2000
            return cyclic(lo, hi, half=half)
        lr = self.suggestion
        if kind != self.target:
            rule = TARGET_RULE[kind]
            if self.verification is not None:
                raise ValueError(
                    f"schedule(kind={kind!r}): this result's suggestion ({self.suggestion:.3g}) was "
                    f"verified for target={self.target!r}, and {TARGET_WORDS[kind]} is a different answer: "
                    f"run find_lr(..., target={kind!r}), or take the curve's unverified reading "
                    f"suggestions[{rule!r}] ({self.suggestions.get(rule, math.nan):.3g}) yourself"
                )
            lr = self.suggestions.get(rule, math.nan)
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"the range test found no usable LR for {TARGET_WORDS[kind]} ({rule}: {lr})")
        if kind == "constant":
            return constant(lr)
        if steps is None:
            raise ValueError("schedule(kind='onecycle') needs `steps`, the training length")
        return onecycle(lr, steps=steps)

    # -- serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (non-finite numbers become None, which `from_dict` reads back as
        NaN, or as inf for a candidate's score: a diverged sweep's last loss or a diverged
        candidate's standard error, inf here, comes back as NaN)."""
        d = asdict(self)
        d["format"] = FORMAT
        return _json_safe(d)

    def to_json(self, path: str | Path | None = None) -> str:
        """The result as JSON text; also written to `path` if given (atomically: a failed write
        leaves an earlier file there whole)."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, path: str | Path) -> FinderResult:
        """Read a result that `to_json` wrote to `path`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinderResult:
        """Rebuild a result from `to_dict` data."""
        if d.get("format") != FORMAT:
            raise ValueError(f"not a finder result (format {d.get('format')!r}, expected {FORMAT!r})")
        d = {k: v for k, v in d.items() if k != "format"}
        nan = math.nan

        def num(x: Any) -> float:
            return nan if x is None else float(x)

        d["losses"] = [num(x) for x in d["losses"]]
        d["smoothed"] = [num(x) for x in d["smoothed"]]
        d["suggestion"] = num(d["suggestion"])
        d["suggestions"] = {k: num(v) for k, v in d["suggestions"].items()}
        d["interval"] = tuple(num(x) for x in d["interval"])
        d["seeds"] = {int(k): num(v) for k, v in d.get("seeds", {}).items()}
        d["repeats"] = {
            int(k): {"lrs": [num(x) for x in c["lrs"]], "smoothed": [num(x) for x in c["smoothed"]]}
            for k, c in d.get("repeats", {}).items()
        }
        if d.get("verification") is not None:
            v = dict(d["verification"])
            # a candidate whose run diverged scores inf, which JSON holds as null
            v["scores"] = [math.inf if x is None else float(x) for x in v["scores"]]
            v["errors"] = [num(x) for x in v.get("errors", [])]
            for key in ("chosen", "best"):
                if key in v:
                    v[key] = num(v[key])
            d["verification"] = Verification(**v)
        return cls(**d)

    # -- pictures -------------------------------------------------------------------------------
    def plot(self, path: str | Path | None = None) -> Figure:
        """The loss against the LR (log axis), smoothed curve, suggestions and interval; below
        it, when the result was verified, each candidate's score with its standard error (see
        `Verification`), on the same LR axis. Saved to `path` when given (atomically)."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as e:
            raise ImportError("FinderResult.plot needs matplotlib: pip install 'lrkit[plot]'") from e
        verified = self.verification
        fig = Figure(figsize=(8.0, 4.8 if verified is None else 7.2), layout="constrained")
        FigureCanvasAgg(fig)
        if verified is None:
            ax = fig.subplots()
        else:
            ax, below = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
            _plot_verification(below, verified)
        x = np.asarray(self.lrs)
        ax.plot(x, self.losses, color="0.75", linewidth=0.8, label="loss")
        others = f"seed{'s' if len(self.repeats) > 1 else ''} {', '.join(map(str, self.repeats))}"
        for i, curve in enumerate(self.repeats.values()):
            label = f"smoothed, {others}" if i == 0 else None
            ax.plot(curve["lrs"], curve["smoothed"], color="C0", alpha=0.35, linewidth=1.0, label=label)
        first = f", seed {min(self.seeds)}" if self.repeats and self.seeds else ""
        ax.plot(x, self.smoothed, color="C0", linewidth=1.8, label=f"smoothed{first}")
        lo, hi = self.interval
        if math.isfinite(lo) and math.isfinite(hi):
            ax.axvspan(lo, hi, color="C2", alpha=0.12, label="useful interval")
        for i, (name, v) in enumerate(self.suggestions.items()):
            if math.isfinite(v) and v > 0:
                style = "-" if name.startswith("lrkit") else ":"
                ax.axvline(
                    v, color=f"C{(i + 3) % 10}", linestyle=style, linewidth=1.2, label=f"{name}: {v:.2g}"
                )
        if math.isfinite(self.suggestion):
            ax.axvline(
                self.suggestion,
                color="k",
                linewidth=2.0,
                label=f"suggestion ({self.target}): {self.suggestion:.2g}",
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate" if verified is None else "")
        ax.set_ylabel("training loss")
        finite = np.asarray(self.smoothed)[np.isfinite(self.smoothed)]
        if finite.size:
            low = float(finite.min())
            top = max(float(finite[0]), float(np.median(finite)))
            span = top - low
            # a flat curve's ripples are not shape: leave room for the raw losses' noise around it
            extra = max(0.0, 6.0 * noise(self.losses, self.smoothed) - span) / 2
            ax.set_ylim(low - 0.1 * span - extra - 1e-12, top + 0.3 * span + extra + 1e-12)
        ax.set_title(f"LR range test ({self.status})", fontsize="medium")
        ax.legend(fontsize="x-small", loc="best")
        ax.grid(True, alpha=0.3, which="both")
        if path is not None:
            save_figure(fig, path, dpi=120)
        return fig


def _plot_verification(ax: Any, v: Verification) -> None:
    """Each candidate's score against its LR, with a bar of one standard error of its paired
    difference from the best score (a candidate whose bar reaches the best score's line is tied
    with it); the candidate taken (the smallest tied one) and the suggestion it scales to."""
    lrs = np.asarray(v.candidates, dtype=np.float64)
    scores = np.asarray(v.scores, dtype=np.float64)
    ok = np.isfinite(scores)
    errors = np.asarray(v.errors if len(v.errors) == len(v.scores) else [0.0] * len(v.scores))
    errors = np.where(np.isfinite(errors), errors, 0.0)
    if ok.any():
        ax.errorbar(
            lrs[ok],
            scores[ok],
            yerr=errors[ok],
            fmt="o-",
            color="C0",
            capsize=3,
            linewidth=1.0,
            label=f"{v.on} after {v.steps} steps (bars: one standard error)",
        )
        low, high = float(scores[ok].min()), float(scores[ok].max())
        ax.axhline(low, color="0.5", linewidth=0.8, linestyle="--")  # the best score
        span = max(high - low, 1e-12 * max(abs(high), 1.0))
        if not ok.all():  # candidates whose run diverged: marked above the others
            top = high + 0.15 * span
            ax.plot(lrs[~ok], [top] * int((~ok).sum()), "x", color="C3", label="diverged")
        if math.isfinite(v.best):
            ax.plot(
                [v.best],
                [scores[int(np.argmin(np.abs(lrs - v.best)))]],
                "o",
                color="C1",
                markersize=9,
                fillstyle="none",
                label=f"taken: {v.best:.2g}",
            )
    if math.isfinite(v.chosen):
        how = f"{v.best:.2g} x {v.horizon_factor:.2g} = " if math.isfinite(v.best) else ""
        ax.axvline(v.chosen, color="k", linewidth=2.0, label=f"suggestion: {how}{v.chosen:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(v.on)
    ax.set_title("verification: candidates trained from the same start", fontsize="medium")
    ax.legend(fontsize="x-small", loc="best")
    ax.grid(True, alpha=0.3, which="both")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj
