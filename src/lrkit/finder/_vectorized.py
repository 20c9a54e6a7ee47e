"""Verification of several candidate LRs at once: one model, its parameters and buffers stacked
along a new leading axis, losses by `torch.func.vmap`, gradients by one backward pass, and
optimizer updates written for the stack with one LR per candidate (`_stacked`).

Used when the model allows it: an optimizer whose update `_stacked` implements (SGD, Adam,
AdamW, RMSprop, Adagrad; any param groups), no recurrent layers, plain
``(inputs, target)`` batches, and no AMP (`supported` says whether a case qualifies), and every
operation of the model's forward and backward pass has a batching rule: vmap's slow fallback (a
loop over the candidates, slower than training them one after the other) is switched off, and a
model that would need it, or candidates that do not fit in memory together, raise `Unbatchable`
on the first step. Otherwise the verification trains the candidates one after the other.
BatchNorm's running statistics are stacked like the parameters, so each candidate keeps its own.
Attention (`nn.MultiheadAttention`, the transformer layers, `scaled_dot_product_attention`) is
batched by leaving its fused inference path and, where a fused kernel cannot be batched (on the
CPU, or with attention dropout on CUDA), by taking the math backend (`_batchable_attention`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, vmap

from lrkit.adapters.torch import ScheduleLR
from lrkit.finder._stacked import STACKED, StackedOptimizer
from lrkit.finder._sweep import Batches, LossFn, Replay, _to, batch_size, pieces, train_modes
from lrkit.schedules import Schedule, constant


def supported(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """None when the vectorized path applies, else the reason it does not."""
    if any(isinstance(m, torch.nn.RNNBase) for m in model.modules()):
        return "recurrent layers have no vmap batching rule"
    if type(optimizer) not in STACKED:
        return f"{type(optimizer).__name__} is not vectorized ({', '.join(c.__name__ for c in STACKED)} are)"
    for g in optimizer.param_groups:
        options = ("amsgrad", "maximize", "dampening", "differentiable")
        if any(g.get(k) for k in options) or isinstance(g["lr"], torch.Tensor):
            return f"the optimizer uses options not vectorized ({', '.join(options)}, a tensor LR)"
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if {id(p) for g in optimizer.param_groups for p in g["params"]} != trainable:
        return "the optimizer does not hold exactly the model's trainable parameters"
    return None


@contextlib.contextmanager
def _batchable_attention(math_backend: bool) -> Iterator[None]:
    """PyTorch's attention in a form that vmap can batch, for the duration of the block.

    `nn.MultiheadAttention` and the transformer layers leave their fused inference path (its
    kernels have no batching rule); with `math_backend`, `scaled_dot_product_attention` also
    takes its plain-math backend, for when a fused one cannot serve (the CPU's fused kernel has
    no batching rule, and the CUDA ones cannot draw one dropout mask for a batch of candidates).
    Both settings are put back afterwards; a build of torch without them is left as it is.
    (Without the fused path, the outputs at positions that a key padding mask hides are computed
    rather than left at zero, so a model that pools over them validates slightly differently
    than in its own evaluation.)
    """
    mha = getattr(torch.backends, "mha", None)
    get, set_ = getattr(mha, "get_fastpath_enabled", None), getattr(mha, "set_fastpath_enabled", None)
    with contextlib.ExitStack() as stack:
        if get is not None and set_ is not None:
            before = get()
            set_(False)
            stack.callback(set_, before)
        if math_backend:
            try:
                from torch.nn.attention import SDPBackend, sdpa_kernel
            except ImportError:  # torch < 2.3: the math backend is chosen by other means
                pass
            else:
                stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        yield


class _RngStates:
    """The CPU's and `device`'s random states, to start a second attempt where the first did."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def group_scales(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each param group's LR scale, as `ScheduleLR` reads it when the candidates train one after
    the other (a group's ``"lr_scale"``, else its LR over the optimizer's default LR). Reading
    it writes the scales as the groups' LRs; the finder restores the optimizer afterwards."""
    sched = ScheduleLR(optimizer, constant(1.0))
    try:
        return [float(s) for s in sched.state_dict()["scales"]]
    finally:
        sched.close()


class Unbatchable(RuntimeError):
    """The candidates cannot train together: the model uses an operation that vmap cannot batch
    (without its slow fallback), or the stacked copies do not fit in memory."""


@contextlib.contextmanager
def _without_slow_fallback() -> Iterator[None]:
    """Make vmap raise on an operation without a batching rule instead of looping over the
    candidates (when this build of torch lets us; otherwise a no-op)."""
    functorch = getattr(torch._C, "_functorch", None)
    get = getattr(functorch, "_is_vmap_fallback_enabled", None)
    set_ = getattr(functorch, "_set_vmap_fallback_enabled", None)
    if get is None or set_ is None:
        yield
        return
    before = get()
    set_(False)
    try:
        yield
    finally:
        set_(before)


def _grads(losses: torch.Tensor, leaves: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Every candidate's gradient: one backward pass of the sum of their losses (candidate k's
    loss depends only on its own slice). A parameter the loss does not use gets zeros."""
    return torch.autograd.grad(losses.sum(), leaves, allow_unused=True, materialize_grads=True)


def _clip(grads: tuple[torch.Tensor, ...], max_norm: float) -> tuple[torch.Tensor, ...]:
    """Each candidate's gradient scaled to a total norm of at most `max_norm`, by
    ``torch.nn.utils.clip_grad_norm_``'s formula: the factor ``max_norm / (norm + 1e-6)``, at most
    1, where `norm` is the 2-norm over all of the candidate's parameters."""
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads])
    factor = torch.clamp(max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6), max=1.0)
    return tuple(g * factor.view((-1,) + (1,) * (g.dim() - 1)) for g in grads)


@_without_slow_fallback()
def verify_stacked(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batches: Batches | Replay,
    candidates: list[float],
    shape: Schedule,
    steps: int,
    val_loader: Iterable[Any] | None,
    clip: float | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Train every candidate for `steps` steps at once; the LR of candidate k at step t is
    ``candidates[k] * shape(t)``; with `clip`, each candidate's gradient is clipped to that
    total norm before its step (see `_clip`).

    Returns ``(samples, weights, steps)``: each candidate's losses on the same pieces, shape
    ``(candidates, pieces)`` (pieces of the validation batches, see `pieces`, or without
    `val_loader` the training losses of the last quarter of the steps; a row of inf when the
    candidate diverged), the pieces' sizes, and the optimizer steps applied per candidate.

    Raises `Unbatchable` before the first update when an operation of the model has no batching
    rule, or the stacked candidates do not fit in memory (both tried on the first training batch,
    in eval mode and in training mode); the model's own parameters and buffers are never written.
    """
    device = next(model.parameters()).device
    k = len(candidates)
    train = train_modes(model)
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    # Buffers are stacked too: BatchNorm's running statistics are each candidate's own.
    buffers = {
        n: b.detach().unsqueeze(0).repeat((k,) + (1,) * b.dim()).clone() for n, b in model.named_buffers()
    }
    params = {
        n: p.detach().unsqueeze(0).repeat((k,) + (1,) * p.dim()).clone().requires_grad_(True)
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    factors = shape(np.arange(steps))
    group_of = {id(p): g for g, group in enumerate(optimizer.param_groups) for p in group["params"]}
    groups = [group_of[id(p)] for _, p in model.named_parameters() if p.requires_grad]
    opt = StackedOptimizer(optimizer, params, list(candidates), groups=groups, scales=group_scales(optimizer))

    def call(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: Any) -> Any:
        # the inputs as the model takes them one candidate at a time (`_forward`)
        if isinstance(x, dict):
            return functional_call(model, ({**p, **frozen}, b), (), x)
        args = (x,) if isinstance(x, torch.Tensor) else tuple(x)
        return functional_call(model, ({**p, **frozen}, b), args)

    def loss_one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: Any, y: Any) -> torch.Tensor:
        return loss_fn(call(p, b, x), y)

    # The candidates' losses by a vmapped forward pass, their gradients by `_grads`: the same
    # numbers as `vmap(grad(...))`, a third faster on small models.
    whole = vmap(loss_one, in_dims=(0, 0, None, None), randomness="same")
    leaves = list(params.values())
    tail: list[torch.Tensor] = []
    alive = torch.ones(k, dtype=torch.bool, device=device)
    first = batches.next()
    x, y = _to(first[0], device), _to(first[1], device)
    # The first step decides: with torch's attention kernels as they are, else with its math
    # backend for attention (see `_batchable_attention`), else not at all.
    rng = _RngStates(device)
    attention: contextlib.ExitStack | None = None
    for math_backend in (False, True):
        attempt = contextlib.ExitStack()
        try:
            attempt.enter_context(_batchable_attention(math_backend))
            if val_loader is not None:  # the validation pass runs in eval mode, which may use other kernels
                model.eval()
                with torch.no_grad():
                    whole(params, buffers, x, y)
            train()
            losses = whole(params, buffers, x, y)
            grads = _grads(losses, leaves)
        except BaseException as e:  # torch's settings go back whatever happened, an interrupt too
            attempt.close()
            # OutOfMemoryError is a RuntimeError; a model that checks its inputs' types may see
            # vmap's batched tensors as something else (TypeError): one after the other then says
            if not isinstance(e, (RuntimeError, NotImplementedError, TypeError)):
                raise
            if math_backend:
                raise Unbatchable(f"the candidates cannot be trained together under vmap: {e}") from e
            rng.restore()
        else:
            attention = attempt
            break
    assert attention is not None  # the loop either breaks with it or raises
    if isinstance(batches, Replay):  # the candidates train together: no run will replay them
        batches.forget()
    with attention:
        for t in range(steps):
            if t:
                batch = batches.next()
                x, y = _to(batch[0], device), _to(batch[1], device)
                losses = whole(params, buffers, x, y)
                grads = _grads(losses, leaves)
            losses = losses.detach()
            # A diverged candidate goes on computing with non-finite numbers, which touches no other
            # candidate (every operation is per candidate), and is scored inf at the end. As in
            # `run_steps`, a loss past float32's range counts as diverged.
            alive &= torch.isfinite(losses.float())
            opt.step(grads if clip is None else _clip(grads, clip), float(factors[t]))
            if t >= steps - max(1, steps // 4):
                tail.append(losses)
        if val_loader is not None:
            samples, weights = _val_samples(model, call, whole, loss_fn, params, buffers, val_loader)
        else:
            samples = torch.stack(tail, 1)
            weights = np.ones(samples.shape[1])
    out_np = samples.detach().cpu().double().numpy()
    out_np[~alive.cpu().numpy()] = math.inf
    out_np[~np.isfinite(out_np).all(axis=1)] = math.inf
    return out_np, weights, steps


def _val_samples(
    model: torch.nn.Module,
    call: Callable[..., Any],
    whole: Callable[..., torch.Tensor],
    loss_fn: LossFn,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    val_loader: Iterable[Any],
) -> tuple[torch.Tensor, np.ndarray]:
    """Every candidate's loss on the pieces of the validation batches (see `pieces`), in eval
    mode: shape ``(candidates, pieces)``, and the pieces' sizes. A batch whose output has no
    batch axis to split is one piece, scored by `whole`."""
    device = next(iter(params.values())).device
    model.eval()
    forward = vmap(call, in_dims=(0, 0, None), randomness="same")
    score = vmap(loss_fn, in_dims=(0, None), randomness="same")
    scored: list[torch.Tensor] = []
    sizes: list[float] = []
    with torch.no_grad():
        for batch in val_loader:
            x, y = _to(batch[0], device), _to(batch[1], device)
            n = batch_size(y)
            out = forward(params, buffers, x) if n is not None else None
            if n is None or not (isinstance(out, torch.Tensor) and out.dim() >= 2 and out.shape[1] == n):
                scored.append(whole(params, buffers, x, y))
                sizes.append(float(n or 1))
                continue
            for sl in pieces(n):
                scored.append(score(out[:, sl], y[sl]))
                sizes.append(float(sl.stop - sl.start))
    if not scored:
        raise ValueError("`val_loader` yielded no batches")
    return torch.stack(scored, 1), np.asarray(sizes)
