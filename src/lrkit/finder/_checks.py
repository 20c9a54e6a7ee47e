"""`find_lr`'s argument checks: each names the argument, the value and what was expected."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

#: The schedules a suggestion can be for.
TARGETS = ("constant", "onecycle")
#: The fewest optimizer steps a verified candidate trains.
MIN_VERIFY_STEPS = 5
#: How many candidate LRs verification trains by default.
CANDIDATES = 5


def check_inputs(
    model: Any,
    optimizer: Any,
    start_lr: float,
    end_lr: float,
    steps: int,
    mode: str,
    target: str,
    accumulation: int,
    seeds: int,
    diverge: float,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    amp: Any = False,
    seed: Any = 0,
    smooth_width: Any = 0.05,
    verify: Any = None,
    on_step: Any = None,
) -> None:
    """Raise `TypeError` or `ValueError` for the first of `find_lr`'s arguments that cannot
    serve, before anything trains or is saved."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"`model` ({type(model).__name__}) has no trainable parameters")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"`optimizer` must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if getattr(type(optimizer), "learning_rate_free", False) is True:
        raise ValueError(
            f"`optimizer` is {type(optimizer).__name__}, which sets its own step size: its `lr` only "
            "multiplies that step (default 1.0), and a range test over the multiplier misleads (a "
            "sweep from tiny multipliers keeps the step it estimates tiny, and the suggestion may not "
            "train at all); keep lr=1.0, or compare a few multipliers around 1 with lrkit.tune"
        )
    if needs_closure(optimizer):
        raise ValueError(
            f"`optimizer` is {type(optimizer).__name__}, whose step() needs a closure that evaluates "
            "the loss again (and may evaluate it many times per step); the range test takes one "
            "step per batch after its own backward pass: use a first-order optimizer (SGD, Adam, ...)"
        )
    for name, obj, methods in (
        ("scheduler", scheduler, ("state_dict", "load_state_dict")),
        (
            "scaler",
            scaler,
            ("is_enabled", "scale", "unscale_", "step", "update", "state_dict", "load_state_dict"),
        ),
    ):
        missing = [m for m in methods if not callable(getattr(obj, m, None))]
        if obj is not None and missing:
            raise TypeError(
                f"`{name}` must be None or an object with {', '.join(methods)} (a torch or lrkit "
                f"{'LR scheduler' if name == 'scheduler' else 'torch.amp.GradScaler'}), got "
                f"{type(obj).__name__} without {', '.join(missing)}"
            )
    in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
    if not any(id(p) in in_opt for p in trainable):
        raise ValueError("`optimizer` holds none of the model's trainable parameters")
    for name, v in (("start_lr", start_lr), ("end_lr", end_lr)):
        if not (_number(v) and math.isfinite(v) and v > 0):
            raise ValueError(f"`{name}` must be a finite number > 0, got {name}={v!r}")
    if start_lr >= end_lr:
        raise ValueError(f"`start_lr` must be < `end_lr`, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 20:
        raise ValueError(
            f"`steps` must be an integer >= 20 (too few steps to read a curve), got steps={steps!r}"
        )
    if mode not in ("exp", "linear"):
        raise ValueError(f"`mode` must be 'exp' or 'linear', got mode={mode!r}")
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {', '.join(TARGETS)}, got target={target!r}")
    if isinstance(accumulation, bool) or not isinstance(accumulation, int) or accumulation < 1:
        raise ValueError(f"`accumulation` must be an integer >= 1, got accumulation={accumulation!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"`seeds` must be an integer >= 1, got seeds={seeds!r}")
    if not (_number(diverge) and 0 < diverge <= 10):
        raise ValueError(f"`diverge` must be a number in (0, 10], got diverge={diverge!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got seed={seed!r}")
    if not (_number(smooth_width) and 0 < smooth_width <= 1):
        raise ValueError(
            f"`smooth_width` must be a number in (0, 1] (the smoothing kernel's width as a fraction of "
            f"the curve), got smooth_width={smooth_width!r}"
        )
    if not (isinstance(amp, bool) or (isinstance(amp, torch.dtype) and amp.is_floating_point)):
        raise ValueError(f"`amp` must be True, False or a floating-point torch.dtype, got amp={amp!r}")
    if verify is not None and not isinstance(verify, bool):
        raise ValueError(f"`verify` must be None, True or False, got verify={verify!r}")
    if on_step is not None and not callable(on_step):
        raise TypeError(f"`on_step` must be None or a function (done, total), got {type(on_step).__name__}")


def _number(v: Any) -> bool:
    """A real number (bool is not one here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` cannot be called without arguments (``torch.optim.LBFGS``).

    Read on the optimizer's class where it defines ``step``: a torch LR scheduler replaces the
    instance's ``step`` with a wrapper whose signature is the unbound method's, ``self`` and all.
    """
    step = getattr(type(optimizer), "step", None)
    try:
        if inspect.isfunction(step):
            params = list(inspect.signature(step).parameters.values())[1:]  # without self
        else:
            params = list(inspect.signature(optimizer.step).parameters.values())
    except (TypeError, ValueError):  # no signature to read: assume it steps like torch's
        return False
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in plain and p.default is inspect.Parameter.empty for p in params)


def verify_length(verify_steps: int | None, train_steps: int | None, candidates: int, steps: int) -> int:
    """Optimizer steps per verified candidate: `verify_steps` if given, else a `candidates`-th
    share of `train_steps`, else the sweep's `steps`; checked before anything trains (a
    candidate needs at least `MIN_VERIFY_STEPS` to be ranked)."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
        raise ValueError(f"`candidates` must be an integer >= 2, got candidates={candidates!r}")
    if verify_steps is not None:
        whole = isinstance(verify_steps, int) and not isinstance(verify_steps, bool)
        if not whole or verify_steps < MIN_VERIFY_STEPS:
            raise ValueError(
                f"`verify_steps` must be an integer >= {MIN_VERIFY_STEPS}, got verify_steps={verify_steps!r}"
            )
        return verify_steps
    if train_steps is not None:
        if isinstance(train_steps, bool) or not isinstance(train_steps, int) or train_steps < 1:
            raise ValueError(f"`train_steps` must be an integer >= 1, got train_steps={train_steps!r}")
        least = MIN_VERIFY_STEPS * candidates
        if train_steps < least:
            raise ValueError(
                f"`train_steps` must be >= {least} to verify {candidates} candidates within it "
                f"({MIN_VERIFY_STEPS} steps each at least), got train_steps={train_steps}: give fewer "
                "`candidates`, set `verify_steps` (the verification then costs more than the training), "
                "or verify=False"
            )
        return train_steps // candidates
    return steps


def verify_steps_for(train_steps: int, candidates: int = CANDIDATES) -> int:
    """Steps per verified candidate for a training of `train_steps` optimizer steps, for callers
    that verify whatever the training's length: the `candidates` share its steps, or train
    `MIN_VERIFY_STEPS` each when it is too short for that.

    >>> verify_steps_for(1000), verify_steps_for(12)
    (200, 5)
    """
    return max(MIN_VERIFY_STEPS, train_steps // candidates)
