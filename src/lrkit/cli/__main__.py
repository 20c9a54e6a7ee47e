"""``python -m lrkit.cli``: the same as the ``lrkit`` command."""

from lrkit.cli import main

main()
