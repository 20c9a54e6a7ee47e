"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a loopback port, made and stopped by scripts/with-postgres.

    Inside ``scripts/with-postgres`` (``LRKIT_POSTGRES_URL`` set) that server is used; otherwise the
    script is started here around a process that prints the URL and waits for its stdin to close.
    """
    url = os.environ.get("LRKIT_POSTGRES_URL")
    if url:
        yield url
        return
    hold = "import os, sys; print(os.environ['LRKIT_POSTGRES_URL'], flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "with-postgres"), sys.executable, "-c", hold],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("postgresql://"):
        proc.kill()
        pytest.fail(f"scripts/with-postgres did not start a server (exit status {proc.wait()})")
    try:
        yield line
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
