"""`plot_schedules`: draw learning-rate schedules (and their momentum) against the step."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit.schedules import Schedule, parse

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_INSTALL_HINT = "pip install 'lrkit[plot]'"


def _as_schedules(schedules: Any) -> list[Schedule]:
    if isinstance(schedules, (Schedule, str)):
        items: list[Any] = [schedules]
    elif isinstance(schedules, Iterable):
        items = list(schedules)
    else:
        raise TypeError(
            "plot_schedules: `schedules` must be a schedule, a spec string or a list of them, "
            f"got {type(schedules).__name__}"
        )
    if not items:
        raise ValueError("plot_schedules: `schedules` is empty; give at least one schedule")
    out: list[Schedule] = []
    for i, s in enumerate(items):
        if isinstance(s, str):
            out.append(parse(s))
        elif isinstance(s, Schedule):
            out.append(s)
        else:
            raise TypeError(
                f"plot_schedules: schedules[{i}] must be a schedule or a spec string, got {type(s).__name__}"
            )
    return out


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"plot_schedules: `steps` must be an integer >= 1, got steps={steps!r}")
    return int(steps)


def plot_schedules(
    schedules: Schedule | str | Iterable[Schedule | str],
    steps: int,
    *,
    labels: Sequence[str] | None = None,
    log: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Draw one or several schedules over steps ``0 .. steps - 1`` on one figure.

    The top panel shows the learning rate against the step. When any of the schedules cycles
    momentum (`onecycle`, `with_momentum`, `cyclic` with a momentum range), a second panel below
    shows the momentum of those schedules (gaps where a schedule leaves it alone).

    Args:
        schedules: a `Schedule`, a spec string, or a list of them.
        steps: number of optimizer steps to draw, >= 1.
        labels: one legend label per schedule (default: each schedule's spec text).
        log: use a logarithmic LR axis (values <= 0 are left out).
        ax: draw the LR into these axes instead of a new figure; momentum, if any, then goes on
            a twin y-axis of `ax`.

    Returns:
        The matplotlib `Figure` (``fig.savefig("lr.png")`` writes it). A new figure is attached
        to the Agg canvas and is not registered with pyplot.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: `steps` < 1, no schedules, or a `labels` list of the wrong length.

    >>> fig = plot_schedules(["cosine(0.1, steps=100)", "onecycle(0.1, steps=100)"], 100)
    >>> len(fig.axes)
    2
    """
    n = _check_steps(steps)
    items = _as_schedules(schedules)
    if labels is None:
        names = [str(s) for s in items]
    else:
        names = [str(x) for x in labels]
        if len(names) != len(items):
            raise ValueError(
                f"plot_schedules: `labels` needs one label per schedule ({len(items)}), got {len(names)}"
            )
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"plot_schedules needs matplotlib: {_INSTALL_HINT}") from e

    t = np.arange(n)
    lrs = [s(t) for s in items]
    moms = [s.momentum(t) if s.has_momentum else None for s in items]
    any_momentum = any(m is not None for m in moms)

    if ax is None:
        fig = Figure(figsize=(8.0, 6.5 if any_momentum else 4.5), layout="constrained")
        FigureCanvasAgg(fig)
        if any_momentum:
            lr_ax, mom_ax = fig.subplots(2, 1, sharex=True, height_ratios=[2.0, 1.0])
        else:
            lr_ax, mom_ax = fig.subplots(), None
        lr_ax.grid(True, alpha=0.3)
        if mom_ax is not None:
            mom_ax.grid(True, alpha=0.3)
    else:
        fig = ax.figure.figure  # the root figure, also when `ax` lies in a subfigure
        lr_ax = ax
        mom_ax = ax.twinx() if any_momentum else None

    for i, (lr, name) in enumerate(zip(lrs, names, strict=True)):
        y = np.where(lr > 0, lr, np.nan) if log else lr
        lr_ax.plot(t, y, color=f"C{i % 10}", label=name, linewidth=1.6)
    lr_ax.set_ylabel("learning rate")
    if log:
        lr_ax.set_yscale("log")
    elif not any(np.any(lr < 0) for lr in lrs):
        lr_ax.set_ylim(bottom=0.0)  # LRs read best against zero
    if n > 1:
        lr_ax.set_xlim(0, n - 1)

    if mom_ax is not None:
        for i, (m, name) in enumerate(zip(moms, names, strict=True)):
            if m is not None:
                mom_ax.plot(
                    t,
                    m,
                    color=f"C{i % 10}",
                    label=name,
                    linewidth=1.2,
                    linestyle="--" if ax is not None else "-",
                )
        mom_ax.set_ylabel("momentum")

    bottom = mom_ax if (mom_ax is not None and ax is None) else lr_ax
    bottom.set_xlabel("step")
    if len(items) > 1:
        lr_ax.legend(fontsize="small")
    elif ax is None:
        lr_ax.set_title(names[0], fontsize="medium")
    return fig
