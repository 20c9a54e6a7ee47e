"""The ``lrkit`` command line.

- ``lrkit schedule show SPEC --steps N``: the LR (and momentum) as a table.
- ``lrkit schedule plot SPEC [SPEC ...] --steps N -o lr.png``: one figure with all the specs.
- ``lrkit schedule lint SPEC --steps N``: likely mistakes; exit status 1 when there are any.
- ``lrkit demo [-o DIR]``: the schedule gallery (PNG, HTML page, configs as JSON).
- ``lrkit find --task NAME`` / ``lrkit find path/to/file.py:task``: the LR range test.

A malformed spec or option ends a command with exit status 2 and a message, never a traceback.
"""

from __future__ import annotations

import typer

from lrkit.cli._demo import demo
from lrkit.cli._find import find
from lrkit.cli._schedule import schedule_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="lrkit",
    help="lrkit: learning-rate schedules you can read, check and plot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(schedule_app, name="schedule")
app.command("demo")(demo)
app.command("find")(find)


def main() -> None:
    """Run the ``lrkit`` command line (the console script's entry point)."""
    app(prog_name="lrkit")
