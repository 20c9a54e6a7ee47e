"""`find_lr`: the LR range test, its suggestions, uncertainty and optional verification."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

import numpy as np
import torch

from lrkit._checks import positive_or_none
from lrkit.finder._checks import CANDIDATES, check_inputs, verify_length
from lrkit.finder._result import TARGET_RULE, FinderResult
from lrkit.finder._rules import FLAT_DECADES, RULES, below_divergence, progress_interval, rise, smooth
from lrkit.finder._snapshot import Snapshot
from lrkit.finder._sweep import (
    Batches,
    DivergenceMonitor,
    LossFn,
    StepFn,
    Trace,
    default_step,
    run_steps,
)
from lrkit.finder._verify import verify_candidates
from lrkit.schedules import Schedule, exponential, linear

#: Rules compared for the "rules disagree" warning.
COMPARED = ("valley", "minimum/10", "slide", "lrkit")


def _progress(
    on_step: Callable[[int, int], None] | None, offset: int, total: int
) -> Callable[[int], None] | None:
    if on_step is None:
        return None

    def report(i: int) -> None:
        on_step(offset + i, total)

    return report


def _sweep_schedule(start_lr: float, end_lr: float, steps: int, mode: str) -> Schedule:
    if mode == "exp":
        return exponential(start_lr, factor=(end_lr / start_lr) ** (1.0 / (steps - 1)))
    return linear(start_lr, end_lr, steps=steps - 1)


def _read(trace: Trace, target: str, width: float) -> tuple[dict[str, float], list[float], str]:
    lrs = np.asarray(trace.lrs)
    losses = np.asarray(trace.losses)
    sm = smooth(losses, width)
    if losses.size == 0 or not math.isfinite(float(losses[0])):
        return {name: math.nan for name in RULES}, sm.tolist(), "nan-at-start"
    picks = {name: float(fn(lrs, sm)) for name, fn in RULES.items()}
    lo, _ = progress_interval(lrs, sm)
    if not math.isfinite(lo):
        # The loss never fell: the minimum of a flat curve is noise. Where the sweep diverged is
        # still an upper bound; without divergence there is nothing to read.
        edge = float(lrs[trace.stopped_at]) if trace.stopped_at is not None else math.nan
        picks["lrkit"] = below_divergence(edge)
        picks["lrkit-peak"] = below_divergence(edge, peak=True)
        return picks, sm.tolist(), "flat"
    return picks, sm.tolist(), "diverged" if trace.stopped_at is not None else "ok"


def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn | None,
    train_loader: Iterable[Any],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 80,
    mode: str = "exp",
    target: str = "constant",
    step_fn: StepFn | None = None,
    accumulation: int = 1,
    scaler: Any = None,
    amp: bool | torch.dtype = False,
    scheduler: Any = None,
    clip_grad_norm: float | None = None,
    seeds: int = 1,
    seed: int = 0,
    verify: bool | None = None,
    val_loader: Iterable[Any] | None = None,
    train_steps: int | None = None,
    verify_steps: int | None = None,
    candidates: int = CANDIDATES,
    vectorize: bool = True,
    diverge: float = 0.5,
    smooth_width: float = 0.05,
    snapshot: str = "cpu",
    snapshot_dir: str | os.PathLike[str] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> FinderResult:
    """Run an LR range test and suggest a learning rate.

    The LR grows from `start_lr` to `end_lr` over `steps` optimizer steps (exponentially, or
    linearly with ``mode="linear"``) while the training loss is recorded; the sweep stops when
    the loss diverges (see `DivergenceMonitor`). The curve is smoothed without lag and read by
    every rule in `lrkit.finder.RULES`; `suggestion` is lrkit's pick for the `target` schedule:
    a constant LR, or the peak of a one-cycle schedule (higher, since it is reached after a
    warmup and held briefly). Smith, "Cyclical Learning Rates for Training Neural Networks",
    WACV 2017.

    The test trains, so it runs with gradients on, also when called under ``torch.no_grad()``
    or ``torch.inference_mode()`` (its batches must then be ordinary tensors, made outside
    inference mode), and in the modes the caller set for training: a submodule in eval mode (a
    frozen BatchNorm) stays in eval mode, unless the whole model is, which then trains in train
    mode. Afterwards the model's parameters, buffers, gradients and modes, the
    optimizer's state and LRs, `scheduler` and `scaler` (if given) and the Python/NumPy/torch
    RNG states are restored exactly, also when the test raises or is interrupted. The snapshot
    is kept on the CPU (``snapshot="disk"`` writes it to a temporary file in `snapshot_dir`
    instead); no copy is made on the accelerator (verification's candidates trained together
    are the one exception, see `vectorize`).

    Args:
        model, optimizer: what to test; the optimizer's own LR is ignored during the sweep
            (param groups keep their ratios to its default LR).
        start_lr, end_lr: the sweep's first and last LR (finite, ``0 < start_lr < end_lr``).
        steps: optimizer steps of the sweep, >= 20 (it stops earlier when the loss diverges).
        mode: ``"exp"`` (the LR grows geometrically) or ``"linear"``.
        target: the schedule the suggestion is for: ``"constant"`` or ``"onecycle"`` (its peak).
        seed: seeds torch's RNG for the (first) sweep and for verification, >= 0.
        loss_fn: ``loss_fn(model(inputs), target)`` for ``(inputs, target)`` batches; may be None
            when `step_fn` is given.
        train_loader: any re-iterable of batches; it is restarted when exhausted (an iterator,
            such as a generator, serves while its batches last).
        scheduler: the LR scheduler attached to `optimizer`, if any, so that it is restored too
            (an lrkit `ScheduleLR` counts the optimizer steps the sweep takes).
        step_fn: ``step_fn(model, batch) -> loss`` for any other batch (dicts, several inputs);
            lrkit calls ``backward`` and the optimizer. It gets each batch as the loader gives
            it and moves it to the model's device itself.
        accumulation: micro-batches per optimizer step (gradient accumulation).
        scaler: a ``torch.amp.GradScaler``; steps it skips do not advance the sweep, and its
            scale is restored afterwards.
        amp: run the forward pass under ``torch.autocast`` (True, or a dtype).
        clip_grad_norm: clip the gradients to this total norm before every optimizer step, as
            ``torch.nn.utils.clip_grad_norm_`` does in your training (give the same value: with
            clipping, larger LRs stay stable); the gradients are unscaled first with a `scaler`.
        seeds: repeat the sweep this many times (each from the same initial state, with the
            torch RNG seeded ``seed``, ``seed + 1``, ...); the suggestion is their geometric
            median and `spread` their range in decades.
        val_loader: held-out batches, in the form of `train_loader`'s; they turn verification
            on, and each candidate is scored on a full pass over them (so not an iterator).
        verify: also train `candidates` LRs over a decade on either side of the curve's
            suggestion, on a fixed log grid (half-decades for five candidates, so that sweeps
            whose readings differ a little test the same LRs), from the same initial state and
            on the same batches, and pick among them: on `val_loader`'s loss when given (a
            training-loss curve sees neither overfitting nor the under-training that is often
            best on small data), else on the final training loss. The winner is the smallest
            candidate within one standard error of the best score (the one-standard-error rule;
            the error is that of the paired difference over pieces of the validation batches,
            so a small validation set cannot single out an LR it cannot resolve), scaled by
            ``sqrt(verify steps / train_steps)`` because a short run favours large LRs.
            Default: verify when `val_loader` is given.
        train_steps: the length of the training you plan, in optimizer steps. Verification then
            spends at most that much in all (each candidate trains ``train_steps // candidates``
            steps, under a one-cycle compressed to that length for ``target="onecycle"``); it
            must leave each candidate at least 5 steps.
        verify_steps: steps per candidate, >= 5 (overrides `train_steps`; default `steps`).
        candidates: how many LRs verification trains (>= 2).
        vectorize: train the candidates together, as one stacked model under `torch.func.vmap`,
            where the model and optimizer allow it (see `lrkit.finder._vectorized`); they then
            hold `candidates` copies of the parameters, gradients and optimizer state on the
            model's device, and fall back to one after the other if those do not fit. False
            trains them one after the other from the start, with no extra memory on the device.
        diverge: fraction of the progress lost that counts as divergence, in (0, 10].
        smooth_width: the standard deviation of the smoothing kernel, as a fraction of the
            curve's points, in (0, 1] (at least one point).
        snapshot, snapshot_dir: where the state to restore is kept: ``"cpu"`` (memory) or
            ``"disk"`` (a temporary file in `snapshot_dir`, default the system's temporary folder).
        on_step: called as ``on_step(done, total)`` after each sweep step (a progress bar).

    Returns:
        A `FinderResult`.

    Example::

        result = lrkit.find_lr(model, torch.optim.AdamW(model.parameters()), F.cross_entropy, loader)
        result.suggestion, result.suggestions, result.interval
        result.plot("lr_find.png"); result.to_json("lr_find.json")
        schedule = result.schedule("onecycle", steps=10_000)
    """
    check_inputs(
        model,
        optimizer,
        start_lr,
        end_lr,
        steps,
        mode,
        target,
        accumulation,
        seeds,
        diverge,
        scheduler,
        scaler,
        amp=amp,
        seed=seed,
        smooth_width=smooth_width,
        verify=verify,
        on_step=on_step,
    )
    if snapshot not in ("cpu", "disk"):
        raise ValueError(f"`snapshot` must be 'cpu' or 'disk', got snapshot={snapshot!r}")
    if not isinstance(vectorize, bool):
        raise ValueError(f"`vectorize` must be True or False, got vectorize={vectorize!r}")
    clip = positive_or_none(clip_grad_norm, "clip_grad_norm")
    if isinstance(val_loader, Iterator):  # not iter(val_loader): a DataLoader's draws from the RNG
        raise ValueError(
            f"`val_loader` must be a loader that can be iterated anew (a DataLoader, a list of "
            f"batches), got an iterator ({type(val_loader).__name__}): every verified candidate is "
            "scored on a full pass over it, and an iterator is spent after the first"
        )
    if isinstance(val_loader, Sized) and len(val_loader) == 0:  # before the sweep, not after it
        raise ValueError("`val_loader` yielded no batches")
    plain_batches = step_fn is None
    if step_fn is None:
        if loss_fn is None:
            raise ValueError("give `loss_fn` (for (inputs, target) batches) or `step_fn`")
        step_fn = default_step(loss_fn)
    if verify is None:
        verify = val_loader is not None
    per_candidate = verify_length(verify_steps, train_steps, candidates, steps) if verify else 0
    # the test trains: gradients on, also when the caller is under no_grad or inference_mode
    with torch.inference_mode(False), torch.enable_grad():
        t0 = time.perf_counter()
        snap = Snapshot(
            model, optimizer, scheduler, scaler=scaler, to_disk=snapshot == "disk", directory=snapshot_dir
        )
        try:
            traces: list[Trace] = []
            per_seed: dict[int, float] = {}
            readings = []
            for k in range(seeds):
                if k:
                    snap.restore()
                torch.manual_seed(seed + k)
                monitor = DivergenceMonitor(diverge=diverge, warm=max(10, steps // 10))
                trace = run_steps(
                    model,
                    optimizer,
                    _sweep_schedule(start_lr, end_lr, steps, mode),
                    Batches(train_loader),
                    step_fn,
                    steps=steps,
                    accumulation=accumulation,
                    scaler=scaler,
                    amp=amp,
                    monitor=monitor,
                    on_step=_progress(on_step, k * steps, seeds * steps),
                    clip=clip,
                )
                traces.append(trace)
                picks, sm, status = _read(trace, target, smooth_width)
                readings.append((picks, sm, status))
                per_seed[seed + k] = picks[TARGET_RULE[target]]
            result = _combine(traces, readings, per_seed, target, seeds, bool(verify))
            result.steps = sum(t.applied for t in traces)
            result.seconds = time.perf_counter() - t0
            if verify and math.isfinite(result.suggestion):
                snap.restore()
                result.verification = verify_candidates(
                    model,
                    optimizer,
                    snap,
                    Batches(train_loader),
                    step_fn,
                    result.suggestion,
                    target=target,
                    steps=per_candidate,
                    candidates=candidates,
                    val_loader=val_loader,
                    accumulation=accumulation,
                    scaler=scaler,
                    amp=amp,
                    seed=seed,
                    loss_fn=loss_fn if plain_batches else None,
                    train_steps=train_steps,
                    vectorize=vectorize,
                    clip=clip,
                )
                result.suggestion = result.verification.chosen
        finally:
            snap.restore()
            snap.discard()
    for w in result.warnings:
        warnings.warn(w, stacklevel=2)
    return result


#: A sweep that did not diverge and whose smoothed loss ends less than this many times the raw
#: loss's noise above its lowest point gets a warning: it has not shown where training breaks
#: down. On a curve of pure noise (80 steps) the rise stays below 1.5 noise in 99% of draws; the
#: sweeps of lrkit's finder benchmark that end without diverging rise by at least 5.8
#: (``benchmarks/finder_unrisen.py``).
UNRISEN = 3.0


def _combine(
    traces: list[Trace],
    readings: list[tuple[dict[str, float], list[float], str]],
    per_seed: dict[int, float],
    target: str,
    seeds: int,
    verifying: bool,
) -> FinderResult:
    """One result from one or several sweeps (the first sweep's curve is kept for plotting)."""
    hint = (
        "; verification decides among candidates" if verifying else "; consider verification (`val_loader`)"
    )
    picks, sm, status = readings[0]
    trace = traces[0]
    names = list(picks)
    combined = {}
    for name in names:
        vals = [r[0][name] for r in readings if math.isfinite(r[0][name]) and r[0][name] > 0]
        combined[name] = float(np.exp(np.median(np.log(vals)))) if vals else math.nan
    good = [v for v in per_seed.values() if math.isfinite(v) and v > 0]
    spread = float(np.log10(max(good) / min(good))) if len(good) > 1 else 0.0
    lo, hi = progress_interval(np.asarray(trace.lrs), np.asarray(sm))
    result = FinderResult(
        lrs=trace.lrs,
        losses=trace.losses,
        smoothed=sm,
        suggestion=combined[TARGET_RULE[target]],
        suggestions=combined,
        interval=(lo, hi),
        target=target,
        status=status,
        stopped_at=trace.stopped_at,
        seeds=per_seed if seeds > 1 else {},
        repeats={
            seed: {"lrs": list(t.lrs), "smoothed": r[1]}
            for seed, t, r in zip(list(per_seed)[1:], traces[1:], readings[1:], strict=True)
        },
        spread=spread,
    )
    w = result.warnings
    if status == "nan-at-start":
        w.append(
            "the loss was not finite from the first step: check the model, data and loss "
            "(no LR can be suggested)"
        )
    elif status == "flat" and trace.stopped_at is not None:
        w.append(
            f"the loss never fell before the sweep diverged at lr={trace.lrs[trace.stopped_at]:.3g}: "
            f"the suggestion is {FLAT_DECADES:g} decades below that"
            + ("; verification decides around it" if verifying else "; verify it (`val_loader`)")
            + ", use more `steps`, or check that the model can learn at all"
        )
    elif status == "flat":
        w.append(
            "the loss neither fell nor diverged during the sweep (no LR can be suggested): raise "
            "`end_lr`, use more `steps`, or check that the model can learn at all"
        )
    elif trace.stopped_at is None and len(trace.losses) and math.isfinite(hi) and hi >= trace.lrs[-1] / 1.5:
        w.append(
            f"the loss was still falling at end_lr={trace.lrs[-1]:.3g}: raise `end_lr` so the "
            "sweep reaches the LRs where training breaks down"
        )
    elif trace.stopped_at is None and status == "ok" and (risen := rise(trace.losses, sm)) < UNRISEN:
        w.append(
            f"the loss neither diverged nor clearly rose after its lowest point (by {risen:.1f} times "
            f"its step-to-step noise) up to end_lr={trace.lrs[-1]:.3g}: the sweep may not have "
            "reached the LRs where training breaks down; raise `end_lr`"
        )
    if status in ("ok", "diverged") and len(trace.lrs) and math.isfinite(lo) and lo <= trace.lrs[0]:
        w.append(
            f"the loss was already falling at start_lr={trace.lrs[0]:.3g}: lower `start_lr` so that "
            "the sweep shows where the loss starts to fall (the readings may lie below the LRs it tried)"
        )
    if any(r[2] == "nan-at-start" for r in readings[1:]) and status != "nan-at-start":
        w.append("some repeated sweeps had a non-finite loss from the first step")
    compared = [combined[n] for n in COMPARED if math.isfinite(combined[n]) and combined[n] > 0]
    if status != "flat" and len(compared) >= 2 and math.log10(max(compared) / min(compared)) > 1.0:
        w.append(
            f"the rules disagree by {math.log10(max(compared) / min(compared)):.1f} decades "
            f"({', '.join(f'{n}={combined[n]:.2g}' for n in COMPARED)}){hint}"
        )
    if spread > 0.3:
        w.append(f"suggestions vary by {spread:.2f} decades across seeds{hint}")
    return result
