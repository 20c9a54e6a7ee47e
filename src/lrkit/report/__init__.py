"""Self-contained HTML reports: figures embedded as base64 PNGs, and a table of the runs.

- `write_report`: ``index.html`` for the result of `lrkit.train.compare` or `explain`.
- `render_report`: the same page as a string.
"""

from lrkit.report._html import render_report, write_report

__all__ = ["render_report", "write_report"]
