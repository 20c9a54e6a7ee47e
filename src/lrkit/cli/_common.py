"""Helpers shared by the commands: reading specs and reporting errors without a traceback."""

from __future__ import annotations

from typing import NoReturn

import typer

from lrkit.schedules import Schedule, ScheduleError, parse
from lrkit.schedules._base import MAX_STEP

#: Exit status for bad input (a malformed spec, an invalid option), as for usage errors.
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `message` to stderr and leave with exit status `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def at_least_one(value: int | None) -> int | None:
    """Option callback: a count of steps in ``[1, 2**53)``; else exit status 2 with the value."""
    if value is not None and value < 1:
        raise typer.BadParameter(f"must be an integer >= 1, got {value}")
    if value is not None and value >= MAX_STEP:
        raise typer.BadParameter(f"must be below 2**53, got {value}")
    return value


def load_spec(text: str) -> Schedule:
    """Parse a spec given on the command line; a bad spec ends the command with exit status 2."""
    try:
        return parse(text)
    except ScheduleError as e:
        fail(str(e))
