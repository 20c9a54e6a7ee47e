"""`plot_training`: training curves of several runs side by side, seeds summarized by a band."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lrkit.train import CompareResult

_INSTALL_HINT = "pip install 'lrkit[plot]'"


def _stack(series: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, min, max) over the series at every index; NaN where no series has a finite value.

    Series may differ in length (a diverged seed stops early); non-finite values are left out.
    """
    n = max((len(s) for s in series), default=0)
    a = np.full((len(series), n), np.nan)
    for i, s in enumerate(series):
        a[i, : len(s)] = np.asarray(s, dtype=float)
    ok = np.isfinite(a)
    count = ok.sum(axis=0)
    filled = np.where(ok, a, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), np.nan)
    lo = np.where(count > 0, np.where(ok, a, np.inf).min(axis=0, initial=np.inf), np.nan)
    hi = np.where(count > 0, np.where(ok, a, -np.inf).max(axis=0, initial=-np.inf), np.nan)
    return mean, lo, hi


def _draw(ax: Axes, x: np.ndarray, series: Sequence[Sequence[float]], color: str, **kw: Any) -> None:
    mean, lo, hi = _stack(series)
    if len(mean) == 0 or not np.isfinite(mean).any():
        return
    x = x[: len(mean)]
    ax.plot(x, mean, color=color, **kw)
    if len(series) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def _maybe_log(ax: Axes, values: list[float], ratio: float = 20.0) -> None:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) and (v > 0).all() and v.max() / v.min() > ratio:
        ax.set_yscale("log")


def plot_training(result: CompareResult) -> Figure:
    """Draw the runs of a `CompareResult` against the optimizer step.

    Three panels share the step axis: the training loss of every step (solid) with the validation
    loss after every epoch (dashed, dots), the validation metric after every epoch, and the LR.
    Epoch-level values sit at the step that ends their epoch. Each run is one colour; its line is
    the mean over seeds and the band the range (min to max) over seeds. Non-finite values (a
    diverged run) are left out, and the loss and LR axes turn logarithmic when their values span
    more than a factor of 20. The legend, on the metric panel, names every run by its colour,
    also a run that diverged in its first epoch and so has no metric to draw.

    Returns:
        The matplotlib `Figure`, attached to the Agg canvas and not registered with pyplot.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the result has no runs.
    """
    if not result.runs:
        raise ValueError("plot_training: the result has no runs")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError as e:
        raise ImportError(f"plot_training needs matplotlib: {_INSTALL_HINT}") from e

    fig = Figure(figsize=(9.0, 9.5), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, metric_ax, lr_ax = fig.subplots(3, 1, sharex=True, height_ratios=[1.4, 1.0, 0.8])
    spe = max(1, result.steps_per_epoch)
    all_losses: list[float] = []
    all_lrs: list[float] = []
    for i, run in enumerate(result.runs):
        color = f"C{i % 10}"
        hs = run.histories
        steps = max((len(h.losses) for h in hs), default=0)
        x = np.arange(steps, dtype=float)
        _draw(loss_ax, x, [h.losses for h in hs], color, linewidth=1.0, label=run.label)
        _draw(lr_ax, x, [h.lrs for h in hs], color, linewidth=1.4, label=run.label)
        n_ep = max((len(h.epochs) for h in hs), default=0)
        xe = np.arange(1, n_ep + 1, dtype=float) * spe
        val_loss = [h.column("val_loss") for h in hs]
        _draw(
            loss_ax,
            xe,
            val_loss,
            color,
            linestyle="--",
            marker=".",
            linewidth=1.4,
            label=f"{run.label} (val)",
        )
        _draw(
            metric_ax,
            xe,
            [h.column("val_metric") for h in hs],
            color,
            marker="o",
            linewidth=1.6,
            label=run.label,
        )
        all_losses += [v for h in hs for v in h.losses] + [v for s in val_loss for v in s]
        all_lrs += [v for h in hs for v in h.lrs]

    loss_ax.set_ylabel("loss")
    loss_ax.set_title(f"{result.task}: training loss (solid) and validation loss (dashed)", fontsize="medium")
    _maybe_log(loss_ax, all_losses)
    metric_ax.set_ylabel(f"val {result.metric}")
    lr_ax.set_ylabel("learning rate")
    _maybe_log(lr_ax, all_lrs)
    lr_ax.set_xlabel(f"step ({spe} per epoch)")
    for ax in (loss_ax, metric_ax, lr_ax):
        ax.grid(True, alpha=0.3)
    seeds = max(len(r.histories) for r in result.runs)
    if seeds > 1:
        metric_ax.set_title(f"mean over {seeds} seeds; band: min to max", fontsize="small")
    # one entry per run, whichever panels it has a line in: a run that diverged in its first epoch
    # has none on the metric panel
    handles = [Line2D([], [], color=f"C{i % 10}", linewidth=1.6) for i in range(len(result.runs))]
    metric_ax.legend(handles, [r.label for r in result.runs], fontsize="small", loc="best")
    return fig
