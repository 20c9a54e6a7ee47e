"""Plots of schedules. matplotlib is imported only when a plot is drawn (``pip install 'lrkit[plot]'``).

- `plot_schedules`: one or several schedules on one figure (LR, and momentum where it cycles).
"""

from lrkit.plot._schedule import plot_schedules

__all__ = ["plot_schedules"]
