"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def check_stacked_step() -> Callable[..., None]:
    """A check that `StackedOptimizer`, given the same gradients, moves each candidate's slice
    exactly as ``make_opt(params, lr)`` moves a lone copy at LR ``lr * factor``, step by step.
    With `scales` (one per param group of ``make_opt``'s optimizer, whose groups must hold the
    parameters in order), group g steps at ``scales[g] * (lr * factor)``."""
    import torch

    from lrkit.finder._stacked import StackedOptimizer

    def check(
        make_opt: Any,
        *,
        shapes: list[tuple[int, ...]],
        device: str = "cpu",
        buffered: bool,
        scales: list[float] | None = None,
    ) -> None:
        g = torch.Generator().manual_seed(0)
        lrs, factors = [1e-3, 3e-3, 1e-2], [1.0, 0.37, 2.5, 1.0]
        start = [torch.randn(s, generator=g).to(device) for s in shapes]
        grads = [[torch.randn(s, generator=g).to(device) for s in shapes] for _ in factors]
        stacked = {f"p{i}": torch.stack([x.clone() for _ in lrs]) for i, x in enumerate(start)}
        template = make_opt([torch.zeros(1) for _ in shapes], 1.0)
        scales = scales or [1.0]
        group_of = {id(p): i for i, grp in enumerate(template.param_groups) for p in grp["params"]}
        groups = [group_of[id(p)] for grp in template.param_groups for p in grp["params"]]
        opt = StackedOptimizer(template, stacked, lrs, groups=groups, scales=scales, buffered=buffered)
        for step, factor in zip(grads, factors, strict=True):
            opt.step(tuple(torch.stack([gr] * len(lrs)) for gr in step), factor)
        for k, lr in enumerate(lrs):
            own = [torch.nn.Parameter(x.clone()) for x in start]
            ref = make_opt(own, lr)
            for step, factor in zip(grads, factors, strict=True):
                for p, gr in zip(own, step, strict=True):
                    p.grad = gr.clone()
                for grp, scale in zip(ref.param_groups, scales, strict=True):
                    grp["lr"] = scale * (lr * factor)
                ref.step()
            for p, x in zip(own, stacked.values(), strict=True):
                assert torch.equal(p.detach(), x[k]), (k, (p.detach() - x[k]).abs().max().item())

    return check
