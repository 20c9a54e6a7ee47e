"""The ``lrkit`` command line.

- ``lrkit schedule show SPEC [--steps N]``: the LR (and momentum) as a table, by default up to
  where the schedule ends.
- ``lrkit schedule plot SPEC [SPEC ...] [--steps N] -o lr.png``: one figure with all the specs.
- ``lrkit schedule lint SPEC --steps N``: likely mistakes; exit status 1 when there are any.
- ``lrkit demo [-o DIR]``: the schedule gallery (PNG, HTML page, configs as JSON).
- ``lrkit find --task NAME`` / ``lrkit find path/to/file.py:task``: the LR range test.
- ``lrkit train --task NAME --optimizer NAME --schedule SPEC``: one run; its table, history, curves.
- ``lrkit compare --task NAME --schedules SPEC ... --optimizers NAME ... --seeds K``: every
  combination, trained in parallel; curves, a table, all histories and an HTML page.
- ``lrkit explain --task NAME``: the suggested LR against ten times smaller and larger, explained.
- ``lrkit tune --task NAME --strategy grid|random|tpe|gp --trials N [--cv K] [--pruner ...]``: search,
  refit on train+val, test once; a table, figures and an HTML page.
- ``lrkit study show|plot --storage URL --study NAME``: a stored study's best trials and figures.

A malformed spec or option ends a command with exit status 2 and a message, never a traceback;
an output that cannot be written, with exit status 1 (every file is written atomically: it is its
earlier version or its new one, never a truncated one); Ctrl-C or SIGTERM, with exit status 130
and one line, ``interrupted``.
"""

from __future__ import annotations

import typer

from lrkit.cli._common import InterruptibleGroup, stop_on_sigterm
from lrkit.cli._compare import ListOptionsCommand, compare
from lrkit.cli._demo import demo
from lrkit.cli._explain import explain
from lrkit.cli._find import find
from lrkit.cli._schedule import schedule_app
from lrkit.cli._train import train
from lrkit.cli._tune import study_app, tune

__all__ = ["app", "main"]

app = typer.Typer(
    name="lrkit",
    cls=InterruptibleGroup,
    help="lrkit: learning-rate schedules you can read, check and plot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(schedule_app, name="schedule")
app.command("demo")(demo)
app.command("find")(find)
app.command("train")(train)
app.command("compare", cls=ListOptionsCommand)(compare)
app.command("explain")(explain)
app.command("tune")(tune)
app.add_typer(study_app, name="study")


def main() -> None:
    """Run the ``lrkit`` command line (the console script's entry point)."""
    stop_on_sigterm()
    app(prog_name="lrkit")
