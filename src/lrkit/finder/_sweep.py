"""The training steps of a range test (and of verification runs): batches, step functions,
gradient accumulation, AMP, and a divergence monitor that also works for negative losses,
for a diverged loss that levels off, and for NaN/Inf."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lrkit._modes import modes_now
from lrkit.adapters.torch import ScheduleLR
from lrkit.schedules import Schedule

StepFn = Callable[[torch.nn.Module, Any], torch.Tensor]
LossFn = Callable[[Any, Any], torch.Tensor]


class Batches:
    """Endless batches from a loader: a new epoch starts when one runs out."""

    def __init__(self, loader: Iterable[Any], name: str = "train_loader") -> None:
        self.loader = loader
        self.name = name
        self._it: Iterator[Any] | None = None
        self.taken = 0

    def next(self) -> Any:
        if self._it is not None:
            try:
                batch = next(self._it)
            except StopIteration:
                pass
            else:
                self.taken += 1
                return batch
        it = iter(self.loader)
        if it is self._it:  # an iterator (a generator, say) cannot start a new epoch
            raise ValueError(
                f"`{self.name}` ran out after {self.taken} batches and cannot start again: it is an "
                "iterator, not a loader that can be iterated anew (a DataLoader, a list of batches); "
                "pass one of those"
            )
        self._it = it
        try:
            batch = next(self._it)
        except StopIteration:
            raise ValueError(f"`{self.name}` yielded no batches; give it at least one batch") from None
        self.taken += 1
        return batch


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


class Replay:
    """The same batches for several runs: the first run draws from `batches` and keeps what it
    drew (up to `limit` bytes); `rewind` starts the next run at the first kept batch. Past the
    limit, later runs go on drawing fresh batches."""

    def __init__(self, batches: Batches, limit: int = 256 * 2**20) -> None:
        self.source, self.limit = batches, limit
        self.kept: list[Any] = []
        self.size = 0
        self.full = False
        self.pos = 0

    def rewind(self) -> None:
        self.pos = 0

    def forget(self) -> None:
        """No later run will replay these batches: drop the kept batches already served and
        keep no more; `next` goes on from where it is."""
        del self.kept[: self.pos]
        self.pos = 0
        self.full = True

    def next(self) -> Any:
        if self.pos < len(self.kept):
            self.pos += 1
            return self.kept[self.pos - 1]
        batch = self.source.next()
        if not self.full:
            self.size += _nbytes(batch)
            if self.size <= self.limit:
                self.kept.append(batch)
                self.pos += 1
            else:
                self.full = True
        return batch


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def default_step(loss_fn: LossFn) -> StepFn:
    """The step function for ``(inputs, target)`` batches: ``loss_fn(model(inputs), target)``.

    `inputs` may be a tensor, a tuple of tensors (``model(*inputs)``) or a dict
    (``model(**inputs)``); tensors are moved to the model's device.
    """

    def step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(
                f"a batch must be (inputs, target), got {type(batch).__name__}"
                f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}; "
                "for other batches pass step_fn=lambda model, batch: loss"
            )
        device = next(model.parameters()).device
        x, y = _to(batch[0], device), _to(batch[1], device)
        return loss_fn(_forward(model, x), y)

    return step


def _forward(model: torch.nn.Module, x: Any) -> Any:
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def _scalar(loss: Any) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor):
        raise ValueError(f"the loss must be a scalar tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(
            f"the loss must be a scalar tensor, got shape {tuple(loss.shape)}; reduce it "
            "(e.g. loss.mean()) in loss_fn or step_fn"
        )
    if not loss.requires_grad:
        raise ValueError("the loss does not require grad: no trainable parameter contributed to it")
    return loss


class DivergenceMonitor:
    """Decide, step by step, whether the loss has blown up.

    The loss has diverged when it is not finite, or when its moving average (debiased EMA,
    `beta`) has stayed above ``best + diverge * max(start - best, 4 * noise)`` for two steps in a
    row: it has lost a fraction `diverge` of the progress made since the start. `start` is the
    median loss of the first `warm` steps, `best` the lowest moving average so far and `noise`
    the running mean absolute deviation of the loss from its moving average. Differences, not
    ratios, so negative losses work, and a diverged loss that levels off below the start still
    counts. For positive losses, ``ema > 4 * best`` also counts (a fast path for explosions).
    """

    def __init__(self, diverge: float = 0.5, beta: float = 0.9, warm: int = 10) -> None:
        self.diverge, self.beta, self.warm = diverge, beta, warm
        self._ema = 0.0
        self._dev = 0.0
        self._k = 0
        self._first: list[float] = []
        self._start = math.nan  # median loss of the first `warm` steps, once they are seen
        self.best = math.inf
        self._above = 0

    def update(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        self._k += 1
        if self._k > 1:
            prev = self._ema / (1 - self.beta ** (self._k - 1))
            self._dev = self.beta * self._dev + (1 - self.beta) * abs(loss - prev)
        self._ema = self.beta * self._ema + (1 - self.beta) * loss
        ema = self._ema / (1 - self.beta**self._k)
        noise = self._dev / (1 - self.beta ** max(self._k - 1, 1))
        if self._k <= self.warm:
            self._first.append(loss)
            if self._k == self.warm:
                self._start = float(np.median(self._first))
            return False
        self.best = min(self.best, ema)  # after the warm-up: an EMA of a few points is too noisy
        start = self._start
        gap = max(start - self.best, 4.0 * noise, 1e-12 * abs(start))
        high = ema > self.best + self.diverge * gap or (self.best > 0 and ema > 4.0 * self.best)
        self._above = self._above + 1 if high else 0
        return self._above >= 2


@dataclass
class Trace:
    lrs: list[float]
    losses: list[float]
    stopped_at: int | None
    applied: int
    skipped: int


def _autocast(model: torch.nn.Module, amp: bool | torch.dtype) -> contextlib.AbstractContextManager[Any]:
    if amp is False:
        return contextlib.nullcontext()
    device = next(model.parameters()).device
    dtype = (
        amp if isinstance(amp, torch.dtype) else (torch.float16 if device.type == "cuda" else torch.bfloat16)
    )
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_modes(model: torch.nn.Module) -> Callable[[], None]:
    """A function that puts `model` in the modes it trains in: the modes its submodules have now,
    as the caller set them for training (a frozen BatchNorm in eval mode stays in eval mode), or
    train mode throughout when every submodule is in eval mode (a model that was just evaluated)."""
    if any(m.training for m in model.modules()):
        return modes_now(model)

    def train() -> None:
        model.train()

    return train


def run_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    batches: Batches | Replay,
    step_fn: StepFn,
    *,
    steps: int,
    accumulation: int = 1,
    scaler: Any = None,
    amp: bool | torch.dtype = False,
    monitor: DivergenceMonitor | None = None,
    on_step: Callable[[int], None] | None = None,
    clip: float | None = None,
) -> Trace:
    """Train for `steps` applied optimizer steps under `schedule`, recording LR and loss, with the
    model in the modes it trains in (`train_modes`).

    A step that the `GradScaler` skips is not recorded and is taken again at the same LR.
    Stops early when `monitor` says the loss diverged (or, without a monitor, at a non-finite
    loss). With `clip`, the gradients of the optimizer's parameters are clipped to that total
    norm before each step (unscaled first when there is a `scaler`), as
    ``torch.nn.utils.clip_grad_norm_`` does.
    """
    clipped = [p for g in optimizer.param_groups for p in g["params"]] if clip is not None else []
    train_modes(model)()
    sched = ScheduleLR(optimizer, schedule)
    lrs: list[float] = []
    losses: list[float] = []
    skipped = 0
    stopped_at: int | None = None
    try:
        optimizer.zero_grad(set_to_none=True)
        while len(losses) < steps:
            # the schedule's LR (each group trains at it times its scale; the first group's
            # scale may be 0, a frozen part of the model)
            lr = float(schedule(sched.last_epoch))
            total = 0.0
            for _ in range(accumulation):
                batch = batches.next()
                with _autocast(model, amp):
                    loss = _scalar(step_fn(model, batch))
                total += float(loss.detach().float()) / accumulation
                part = loss / accumulation if accumulation > 1 else loss
                (scaler.scale(part) if scaler is not None else part).backward()
            if clip is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(clipped, clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            before = sched.last_epoch
            sched.step()
            if sched.last_epoch == before:
                skipped += 1
                if skipped > max(steps, 100):
                    raise RuntimeError(
                        f"the optimizer skipped {skipped} steps in a row (GradScaler found inf/NaN "
                        "gradients every time); the range test cannot proceed"
                    )
                continue
            lrs.append(lr)
            losses.append(total)
            if on_step is not None:
                on_step(len(losses))
            blown = monitor.update(total) if monitor is not None else not math.isfinite(total)
            if blown:
                stopped_at = len(losses) - 1
                break
    finally:
        sched.close()
    return Trace(lrs, losses, stopped_at, sched.last_epoch, skipped)


#: Each validation batch is scored in up to this many pieces (disjoint groups of its examples),
#: so that the noise of a validation loss can be estimated even from a few batches.
PIECES = 8


def pieces(n: int) -> list[slice]:
    """Up to `PIECES` contiguous, nearly equal slices covering ``range(n)``.

    >>> pieces(3), len(pieces(32)), pieces(32)[0]
    ([slice(0, 1, None), slice(1, 2, None), slice(2, 3, None)], 8, slice(0, 4, None))
    """
    k = max(1, min(n, PIECES))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def batch_size(target: Any) -> int | None:
    """The number of examples in a batch's target (None when it is not a tensor with a batch axis)."""
    if isinstance(target, torch.Tensor) and target.dim() >= 1:
        return int(target.shape[0])
    return None


def val_pieces(
    model: torch.nn.Module,
    loader: Iterable[Any],
    step_fn: StepFn,
    loss_fn: LossFn | None = None,
    amp: bool | torch.dtype = False,
) -> tuple[list[float], list[float]]:
    """Losses over one pass of `loader` in eval mode, without gradients, in pieces.

    With `loss_fn` and ``(inputs, target)`` batches whose output and target are tensors, each
    batch's output is scored in `pieces` (``loss_fn(output[piece], target[piece])``); otherwise
    each batch is one piece (``step_fn(model, batch)``). Returns the piece losses and their sizes
    (examples; 1 per batch when not split); their weighted mean is the loss over the data.
    """
    restore_modes = modes_now(model)
    model.eval()
    losses: list[float] = []
    sizes: list[float] = []
    try:
        with torch.no_grad(), _autocast(model, amp):
            for batch in loader:
                n = batch_size(batch[1]) if isinstance(batch, (tuple, list)) and len(batch) == 2 else None
                if loss_fn is None or n is None:
                    losses.append(float(step_fn(model, batch).detach().float()))
                    sizes.append(1.0)
                    continue
                device = next(model.parameters()).device
                x, y = _to(batch[0], device), _to(batch[1], device)
                out = _forward(model, x)
                if not (isinstance(out, torch.Tensor) and out.dim() >= 1 and out.shape[0] == n):
                    losses.append(float(loss_fn(out, y).detach().float()))
                    sizes.append(float(n))
                    continue
                for sl in pieces(n):
                    losses.append(float(loss_fn(out[sl], y[sl]).detach().float()))
                    sizes.append(float(sl.stop - sl.start))
    finally:
        restore_modes()
    if not losses:
        raise ValueError("`val_loader` yielded no batches")
    return losses, sizes
