"""Argument checks shared by the library's entry points."""

from __future__ import annotations

import errno
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def positive_or_none(value: Any, name: str, where: str = "") -> float | None:
    """`value` as a float when it is a finite number > 0, None when it is None; anything else
    raises a `ValueError` that names the argument (prefixed with `where`, e.g. ``"fit: "``).

    >>> positive_or_none(1, "clip_grad_norm"), positive_or_none(None, "clip_grad_norm")
    (1.0, None)
    >>> positive_or_none(0.0, "clip_grad_norm", "fit: ")
    Traceback (most recent call last):
    ValueError: fit: `clip_grad_norm` must be a finite number > 0 or None, got clip_grad_norm=0.0
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{where}`{name}` must be a finite number > 0 or None, got {name}={value!r}")
    return float(value)


def writable_folder(value: str | os.PathLike[str], name: str, where: str = "", *, make: bool = True) -> Path:
    """`value` as a folder a run can write its results to, checked before the run: a folder that
    cannot hold them is said now, not after the training. With `make`, the folder is made (with
    its parents) and a file written to it and removed; without, nothing is made: the nearest
    folder that exists on its path must be one the process may write to. Anything else raises a
    `ValueError` that names the argument and why.

    >>> writable_folder("/dev/null/below", "out", "tune: ", make=False)
    Traceback (most recent call last):
    ValueError: tune: `out` must be a folder lrkit can write to, got out='/dev/null/below' (Not a directory)
    """
    folder = Path(value)
    try:
        if make:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        else:
            existing = folder.absolute()
            while not existing.exists():
                existing = existing.parent
            if not existing.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            if not os.access(existing, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as e:
        raise ValueError(
            f"{where}`{name}` must be a folder lrkit can write to, got {name}={str(folder)!r} "
            f"({e.strerror or e})"
        ) from None
    return folder
