"""Verification: candidate LRs trained briefly from the same start, then one chosen."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from lrkit.finder._choice import candidate_grid, paired_scores, select
from lrkit.finder._result import Verification
from lrkit.finder._snapshot import Snapshot
from lrkit.finder._sweep import Batches, LossFn, Replay, StepFn, run_steps, val_pieces
from lrkit.finder._vectorized import Unbatchable, supported, verify_stacked
from lrkit.schedules import constant, onecycle

#: Verification candidates span about this many decades on either side of the curve's suggestion.
SPAN = 1.0


def verify_candidates(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    snap: Snapshot,
    batches: Batches,
    step_fn: StepFn,
    suggestion: float,
    *,
    target: str,
    steps: int,
    candidates: int,
    val_loader: Iterable[Any] | None,
    accumulation: int,
    scaler: Any,
    amp: bool | torch.dtype,
    seed: int,
    loss_fn: LossFn | None = None,
    train_steps: int | None = None,
    vectorize: bool = True,
    clip: float | None = None,
) -> Verification:
    """Train each candidate LR briefly from the snapshot and pick one (see `select`).

    All candidates train at once (`verify_stacked`) when the model and optimizer allow it and the
    batches are plain ``(inputs, target)`` without accumulation or AMP; else, or when vmap cannot
    batch one of the model's operations (`Unbatchable`), one after the other. `candidates` and
    `steps` are `find_lr`'s, checked by `verify_length`.
    """
    t0 = time.perf_counter()
    lrs = candidate_grid(suggestion, candidates, SPAN)
    rows: list[np.ndarray] = []
    weights: np.ndarray | None = None
    total = 0
    shape = constant(1.0) if target == "constant" else onecycle(1.0, steps=steps, momentum_range=None)
    stacked = (
        vectorize
        and loss_fn is not None
        and accumulation == 1
        and scaler is None
        and amp is False
        and supported(model, optimizer) is None
    )
    replay = Replay(batches)  # every candidate sees the same batches
    if stacked:
        assert loss_fn is not None  # for the type checker: implied by `stacked`
        snap.restore()
        torch.manual_seed(seed)
        try:
            samples, weights, per = verify_stacked(
                model, optimizer, loss_fn, replay, lrs, shape, steps, val_loader, clip
            )
        except Unbatchable:
            stacked = False
        else:
            rows = list(samples)
            total = per * len(lrs)
    tail = max(1, steps // 4)
    for lr in [] if stacked else lrs:
        snap.restore()
        torch.manual_seed(seed)
        replay.rewind()
        trace = run_steps(
            model,
            optimizer,
            lr * shape,
            replay,
            step_fn,
            steps=steps,
            accumulation=accumulation,
            scaler=scaler,
            amp=amp,
            clip=clip,
        )
        total += trace.applied
        if val_loader is not None:
            row, sizes = (
                ([math.inf], [1.0])
                if trace.stopped_at is not None
                else val_pieces(model, val_loader, step_fn, loss_fn, amp)
            )
        else:
            row = [math.inf] if trace.stopped_at is not None else trace.losses[-tail:]
            sizes = [1.0] * len(row)
        if trace.stopped_at is None:
            weights = np.asarray(sizes)
        rows.append(np.asarray(row, dtype=np.float64))
    scores, errors = paired(rows, weights)
    best, horizon = select(lrs, scores, errors, steps, train_steps)
    chosen = suggestion if best is None else best * horizon
    return Verification(
        candidates=lrs,
        scores=scores,
        on="validation loss" if val_loader is not None else "training loss",
        chosen=chosen,
        steps=steps,
        total_steps=total,
        seconds=time.perf_counter() - t0,
        vectorized=stacked,
        best=math.nan if best is None else best,
        horizon_factor=horizon,
        errors=errors,
    )


def paired(rows: list[np.ndarray], weights: np.ndarray | None) -> tuple[list[float], list[float]]:
    """`paired_scores` over candidates whose runs may have failed (a row of one inf)."""
    n = 1 if weights is None else len(weights)
    full = np.full((len(rows), n), math.inf)
    for k, row in enumerate(rows):
        if row.shape == (n,) and np.all(np.isfinite(row)):
            full[k] = row
    return paired_scores(full, weights)
