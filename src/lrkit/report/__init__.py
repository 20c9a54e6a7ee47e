"""Self-contained HTML reports: figures embedded as base64 PNGs, and a table of the runs.

- `write_report`: ``index.html`` for the result of `lrkit.train.compare` or `explain`.
- `render_report`: the same page as a string.
- `write_tuning_report`: ``tuning.html`` for the result of `lrkit.tune.tune` (`render_tuning_report`).
"""

from lrkit.report._html import compare_section, render_report, write_report
from lrkit.report._tuning import render_tuning_report, tuning_section, write_tuning_report

__all__ = [
    "compare_section",
    "render_report",
    "render_tuning_report",
    "tuning_section",
    "write_report",
    "write_tuning_report",
]
