"""`plot_tuning`: a study's figures: the search's progress, the score against the LR, importances."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lrkit.tune import TuneResult

_COLORS = {"COMPLETE": "C0", "PRUNED": "C7", "FAIL": "C3"}


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plot_tuning needs matplotlib: pip install 'lrkit[plot]'") from e
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_tuning(result: TuneResult) -> dict[str, Figure]:
    """The figures of a tuning run, by name.

    - ``"history"``: each complete trial's score and the best so far against the epochs spent
      (all trials' epochs, pruned ones included, in trial order): the search's cost curve.
    - ``"lr"``: the score of every complete trial against its ``lr`` on a log axis (when the space
      has an ``lr``), pruned trials marked at the bottom.
    - ``"importance"``: each parameter's importance (fANOVA), when it could be computed.

    Raises:
        ImportError: matplotlib is not installed.
    """
    figs: dict[str, Figure] = {}
    trials = sorted(result.trials, key=lambda t: t.number)
    better = max if result.mode == "max" else min

    fig = _figure(7.0, 4.0)
    ax = fig.subplots()
    spent = np.cumsum([t.epochs for t in trials]) if trials else np.zeros(0)
    xs, ys, best_x, best_y = [], [], [], []
    best = math.nan
    for t, e in zip(trials, spent, strict=True):
        if t.state == "COMPLETE" and t.value is not None:
            xs.append(e)
            ys.append(t.value)
            best = t.value if math.isnan(best) else better(best, t.value)
        if not math.isnan(best):
            best_x.append(e)
            best_y.append(best)
    ax.scatter(xs, ys, s=16, color="C0", alpha=0.6, label="complete trial")
    ax.step(best_x, best_y, where="post", color="C1", label="best so far")
    ax.set_xlabel("epochs spent (all trials)")
    ax.set_ylabel(f"validation {result.metric}")
    ax.set_title(f"{result.study}: {result.strategy}, pruner {result.pruner}")
    if ys:
        lo, hi = np.nanpercentile(ys, [10, 100]) if result.mode == "max" else np.nanpercentile(ys, [0, 90])
        pad = 0.1 * (hi - lo) if hi > lo else 0.05 * abs(hi) + 1e-3
        ax.set_ylim(lo - pad, hi + pad)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    figs["history"] = fig

    if any("lr" in t.params for t in trials):
        fig = _figure(7.0, 4.0)
        ax = fig.subplots()
        done = [t for t in trials if t.state == "COMPLETE" and t.value is not None and "lr" in t.params]
        scores = [float(t.value) for t in done if t.value is not None]
        ax.scatter([t.params["lr"] for t in done], scores, color="C0", s=20, label="complete")
        pruned = [t for t in trials if t.state == "PRUNED" and "lr" in t.params]
        if pruned:
            y0 = min((t.value for t in done if t.value is not None), default=0.0)
            ax.scatter([t.params["lr"] for t in pruned], [y0] * len(pruned), marker="|", color="C7", s=80,
                       label="pruned")  # fmt: skip
        if result.best is not None and "lr" in result.best.params:
            ax.axvline(
                result.best.params["lr"], color="C1", ls="--", label=f"best lr {result.best.params['lr']:.3g}"
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"validation {result.metric}")
        ax.set_title("score against the learning rate")
        ax.legend(loc="best")
        ax.grid(alpha=0.3, which="both")
        figs["lr"] = fig

    if result.importance:
        fig = _figure(6.0, 0.5 + 0.45 * len(result.importance))
        ax = fig.subplots()
        names = list(result.importance)[::-1]
        ax.barh(names, [result.importance[n] for n in names], color="C2")
        ax.set_xlabel("importance (fANOVA, share of the score's variance)")
        ax.set_xlim(0, 1)
        figs["importance"] = fig
    return figs
