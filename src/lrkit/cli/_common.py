"""Helpers shared by the commands: reading specs and reporting errors without a traceback."""

from __future__ import annotations

from typing import NoReturn

import typer

from lrkit.schedules import Schedule, ScheduleError, parse

#: Exit status for bad input (a malformed spec, an invalid option), as for usage errors.
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `message` to stderr and leave with exit status `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load_spec(text: str) -> Schedule:
    """Parse a spec given on the command line; a bad spec ends the command with exit status 2."""
    try:
        return parse(text)
    except ScheduleError as e:
        fail(str(e))
