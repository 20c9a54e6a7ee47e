"""Worker processes that stop with the process that started them.

A worker ignores Ctrl-C (the terminal sends it to the whole process group: the parent handles it
and stops its workers, instead of each worker dropping the job it is in and taking the next one),
and on Linux asks the kernel for SIGTERM when its parent dies, so that a parent killed outright
(``kill -9``, or SIGTERM where nothing turns it into an exception) leaves no orphan training on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

__all__ = ["worker_setup"]

#: prctl(2)'s option that sends the calling process a signal when its parent thread dies.
_PR_SET_PDEATHSIG = 1


def worker_setup(parent: int) -> None:
    """Call first thing in a worker process; `parent` is the starting process's pid."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request above was in place
        os._exit(1)
