"""Helpers shared by the commands: reading specs and reporting errors (and Ctrl-C) without a traceback."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from lrkit._checks import writable_folder
from lrkit.schedules import Schedule, ScheduleError, parse
from lrkit.schedules._base import MAX_STEP

if TYPE_CHECKING:
    import torch

#: ``--device``, shared by the commands that train.
DeviceOption = Annotated[
    str, typer.Option("--device", help="Where the model trains: 'cpu', 'cuda', 'cuda:1', ...")
]
#: ``--amp``, shared by the commands that train.
AmpOption = Annotated[
    bool,
    typer.Option(
        "--amp", help="Mixed precision: float16 with a gradient scaler on CUDA, bfloat16 on the CPU."
    ),
]

#: Exit status for bad input (a malformed spec, an invalid option), as for usage errors.
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `message` to stderr and leave with exit status `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


#: Exit status after Ctrl-C (or SIGTERM), as a shell reports a command that SIGINT stopped.
EXIT_INTERRUPTED = 130


def interrupted(kept: str = "") -> NoReturn:
    """Print ``interrupted`` (and `kept`: what the command kept) to stderr; exit status 130."""
    typer.echo("interrupted" + (f"; {kept}" if kept else ""), err=True)
    raise typer.Exit(EXIT_INTERRUPTED)


class InterruptibleGroup(TyperGroup):
    """The command line's group: Ctrl-C (or SIGTERM, see `stop_on_sigterm`) in any command ends it
    with one line, `interrupted`, and exit status 130, where Typer alone exits silently."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a `KeyboardInterrupt` that it lets through is said in one line."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()


def stop_on_sigterm() -> None:
    """Make SIGTERM raise `KeyboardInterrupt` in this process, as Ctrl-C does, so that cleanup
    runs (temporary files removed, worker processes stopped by their owners) instead of the
    process dying on the spot. A SIGTERM that is ignored or handled already is left so, and a
    process forked from this one (a worker) dies of SIGTERM as before."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    pid = os.getpid()

    def default_in_child() -> None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked process that kept the handler: die as before
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    os.register_at_fork(after_in_child=default_in_child)


#: Columns for tables when the output goes to a file or a pipe (rich assumes 80, and squeezes
#: a wide table's numbers to "0.000…"); a log has room, and a table takes only what it needs.
PIPE_WIDTH = 200


def make_console() -> Console:
    """Where a command prints: tables fit the terminal (or, in a file or a pipe, `PIPE_WIDTH`
    columns unless ``COLUMNS`` says otherwise), and a line of text is never broken in the middle
    of a path or a number."""
    console = Console(soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(soft_wrap=True, width=PIPE_WIDTH)
    return console


#: A command's task, given as its argument (``lrkit train path/to/file.py:task``) ...
TaskArgument = Annotated[
    str | None,
    typer.Argument(metavar="TASK", help="A task: a built-in name, path/to/file.py:attr or module:attr."),
]
#: ... or with ``--task`` (``lrkit train --task mlp-digits``).
TaskOption = Annotated[str | None, typer.Option("--task", "-t", help="The task, as an option.")]


def task_name(ref: str | None, task: str | None, command: str, default: str | None = None) -> str:
    """The task a command was given, as its argument or with ``--task`` (not both); `default`
    when neither, else exit status 2 with an example."""
    if ref is not None and task is not None:
        fail("give the task either as an argument or with --task, not both")
    name = ref if ref is not None else task if task is not None else default
    if name is None:
        fail(f"give a task: `lrkit {command} --task mlp-digits` or `lrkit {command} path/to/file.py:task`")
    return name


def check_task_epochs(name: str, epochs: int | None) -> None:
    """When a command runs the task `name` for the task's own epochs (`epochs` None), check them
    first, so that a bad one is said in the command line's words (exit status 2)."""
    if epochs is not None:
        return
    from lrkit.tasks import TaskError, load
    from lrkit.tasks._base import task_epochs

    try:
        task_epochs(load(name), instead="pass --epochs")
    except TaskError as e:
        fail(str(e))


def print_warning(console: Console, text: str, flags: dict[str, str] | None = None) -> None:
    """``warning: text`` in the command's words: each argument named in `flags` as its option."""
    console.print(f"[yellow]warning:[/yellow] {escape(in_flags(text, flags or {}))}")


@contextlib.contextmanager
def warnings_printed(console: Console, flags: dict[str, str] | None = None) -> Iterator[None]:
    """Within the block, a warning the library gives is printed as it happens with
    `print_warning`, instead of Python's ``file:line: UserWarning:`` report."""

    def show(message: Warning | str, *args: object, **kwargs: object) -> None:
        text = re.sub(r"^(fit|compare): ", "", str(message))  # the command is the caller
        print_warning(console, text, flags)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def output_folder(path: Path) -> Path:
    """The command's ``--output`` folder, checked (not made) before the work starts: a folder
    that cannot take the results is said now (exit status 1), not after the training."""
    try:
        return writable_folder(path, "output", make=False)
    except ValueError as e:
        fail(in_flags(str(e), {"output": "--output"}), code=1)


def duration(seconds: float) -> str:
    """Seconds for a status line: two significant digits below one second, else tenths.

    >>> duration(0.0437), duration(0.004), duration(12.345)
    ('0.044 s', '0.004 s', '12.3 s')
    """
    return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"


def in_flags(message: str, flags: dict[str, str]) -> str:
    """A library error in the command line's words: each argument named in `flags` (in
    backquotes, or as ``name=``) becomes its option.

    >>> in_flags("`start_lr` must be < `end_lr`, got start_lr=1, end_lr=0.1",
    ...          {"start_lr": "--start-lr", "end_lr": "--end-lr"})
    '--start-lr must be < --end-lr, got --start-lr=1, --end-lr=0.1'
    """
    for name, flag in flags.items():
        message = re.sub(rf"`{name}`|\b{name}(?==)", flag, message)
    return message


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


def resolve_device(text: str) -> torch.device:
    """`--device`: a torch device that this machine has; else exit status 2 naming the value."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        fail(f"--device must name a torch device such as 'cpu', 'cuda' or 'cuda:1', got {text!r}")
    if device.type == "meta":
        fail(f"--device must hold real data, got {text!r}")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, NotImplementedError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(first) > 200:  # torch's dispatcher lists every backend it was built with
            first = f"this torch build cannot make tensors on {device.type!r}"
        fail(f"--device {text!r} is not available here ({first})")
    return device
