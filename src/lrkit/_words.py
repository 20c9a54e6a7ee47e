"""Words shared by the command line and the reports."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """`n` and `noun`, in the plural unless `n` is 1.

    >>> counted(1, "run"), counted(3, "seed"), counted(0, "trial")
    ('1 run', '3 seeds', '0 trials')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"
