"""Plots of schedules and training runs.

matplotlib is imported only when a plot is drawn (``pip install 'lrkit[plot]'``).

- `plot_schedules`: one or several schedules on one figure (LR, and momentum where it cycles).
- `plot_training`: the runs of `lrkit.train` comparisons: losses, validation metric and LR by step.
- `plot_tuning`: a tuning study: best score against epochs spent, score against the LR, importances.
"""

from lrkit.plot._schedule import plot_schedules
from lrkit.plot._training import plot_training
from lrkit.plot._tuning import plot_tuning

__all__ = ["plot_schedules", "plot_training", "plot_tuning"]
