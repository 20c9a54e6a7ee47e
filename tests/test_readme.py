"""The README's Python examples run as written, and the values their comments show are the values
they give.

Each ```python block runs in a fresh namespace that holds what the examples take as given (a
model, its batches, a loss function, loaders). A line ``expression  # value`` whose comment is a
Python literal (a leading ``floats:`` and a trailing ``: explanation`` aside) is checked: numbers
to the three significant digits the README prints, anything else exactly.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
CLAIM = re.compile(r"^(?P<expr>\S.*?)\s+# (?:floats: )?(?P<value>.+)$")


def _given() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 20, generator=g)
    y = (x[:, :3].sum(1) > 0).long()
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 384, 32)]
    torch.manual_seed(0)
    return {
        "model": nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2)),
        "loss_fn": F.cross_entropy,
        "batches": batches,
        "train_loader": batches,
        "val_loader": [(x[384:], y[384:])],
        "x": x[:32],
        "y": y[:32],
        "path": "checkpoint.pt",
    }


def _literal(comment: str) -> tuple[bool, Any]:
    for text in (comment, comment.split(": ", 1)[0]):
        try:
            return True, ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue
    return False, None


def _claims(block: str) -> list[tuple[str, Any]]:
    out = []
    for line in block.splitlines():
        m = CLAIM.match(line)
        if m is None or "=" in m["expr"].replace("==", "").split("(", 1)[0]:
            continue  # not a claim, or an assignment
        ok, value = _literal(m["value"])
        if ok:
            out.append((m["expr"], value))
    return out


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, tuple):
        return isinstance(got, tuple) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, float) and not isinstance(got, bool):
        return math.isclose(float(got), want, rel_tol=5e-3)
    return bool(got == want)


def test_the_readme_has_python_examples_with_claims() -> None:
    assert len(BLOCKS) >= 5
    assert sum(len(_claims(b)) for b in BLOCKS) >= 4  # the checks below check something


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_example_runs_and_gives_what_it_says(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write their files here
    block = BLOCKS[index]
    namespace = _given()
    exec(compile(block, f"README.md python block {index + 1}", "exec"), namespace)
    for expr, want in _claims(block):
        got = eval(expr, namespace)
        assert _same(got, want), f"README: `{expr}` gives {got!r}, its comment says {want!r}"
