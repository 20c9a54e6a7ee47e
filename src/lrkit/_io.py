"""Atomic file writes: a file lrkit writes is either its earlier complete version or its new
complete version, never a truncated one, whatever stops the write (a full disk, an error, Ctrl-C).

The data goes to a temporary file ``.NAME.<random>.tmp`` in the same folder, is flushed and
fsynced, and then replaces ``NAME`` in one `os.replace`; on any exception the temporary file is
removed and ``NAME`` is left as it was. A temporary file left by a process killed outright is never
a valid file (a finished write is renamed): `remove_temporaries` clears them.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "atomic_file",
    "figure_bytes",
    "remove_temporaries",
    "save_figure",
    "write_atomic",
    "write_bytes_atomic",
    "write_text_atomic",
]


def _temporary(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, opened for writing, with the permissions a plain
    ``open(path, "wb")`` would give (``0o666`` less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _sync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write into that replaces `path` only when the block ends without an
    exception (an exception leaves `path` as it was, and no temporary file).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> with atomic_file(p) as f:
    ...     _ = f.write(b"data")
    >>> p.read_bytes()
    b'data'
    """
    path = Path(path)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)


def write_atomic(files: Mapping[Path, bytes | str]) -> list[Path]:
    """Write several files (bytes, or text as UTF-8), each atomically, and return their paths.

    Every file is written to its temporary file first; only when all are written are they
    renamed into place, in the order given. A write that fails (a full disk) thus changes none of
    them; only a failing rename, which needs no space, could leave some new and some old. Put a
    file that refers to the others (an HTML page) last.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> [p.name for p in write_atomic({d / "a.json": "{}", d / "b.png": b"..."})]
    ['a.json', 'b.png']
    >>> sorted(p.name for p in d.iterdir())
    ['a.json', 'b.png']
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            fd, tmp = _temporary(path)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:  # those renamed already are gone
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for folder in dict.fromkeys(path.parent for _, path in staged):
        _sync_folder(folder)
    return [path for _, path in staged]


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see `write_atomic`); return the path."""
    return write_atomic({Path(path): data})[0]


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` as UTF-8, atomically (see `write_atomic`); return the path."""
    return write_atomic({Path(path): text})[0]


def _figure_path(path: str | Path) -> tuple[Path, str]:
    """The path a matplotlib figure is saved to and its format, as ``fig.savefig(path)`` has them:
    the format from the suffix, or else ``rcParams["savefig.format"]`` added as the suffix."""
    import matplotlib

    path = Path(path)
    if path.suffix:
        return path, path.suffix[1:].lower()
    fmt = str(matplotlib.rcParams["savefig.format"])
    return path.with_name(f"{path.name}.{fmt}"), fmt


def figure_bytes(fig: Any, format: str = "png", **kwargs: Any) -> bytes:
    """A matplotlib figure rendered in memory: ``fig.savefig`` into bytes (`kwargs` go to it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=format, **kwargs)
    return buf.getvalue()


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig(path, **kwargs)``, atomically: the figure is rendered in memory first.

    Returns:
        The path written (with the default format's suffix added when `path` has none, as
        matplotlib does).

    Raises:
        ValueError: the suffix names no format matplotlib can write.
        OSError: the file cannot be written.
    """
    path, fmt = _figure_path(path)
    return write_bytes_atomic(path, figure_bytes(fig, fmt, **kwargs))


def remove_temporaries(folder: str | Path, name: str) -> list[Path]:
    """Remove the temporary files an atomic write of ``folder/name`` left behind when its process
    was killed before it could clean up (``.NAME.*.tmp``); return them. Call it only where no other
    process is writing ``folder/name`` at the same time.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".last.pt.1a2b3c4d.tmp").write_bytes(b"cut sho")
    >>> [p.name for p in remove_temporaries(d, "last.pt")], list(d.iterdir())
    (['.last.pt.1a2b3c4d.tmp'], [])
    """
    removed = []
    for tmp in sorted(Path(folder).glob(f".{glob.escape(name)}.*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed
