"""Verification of several candidate LRs at once: one model, its parameters stacked along a new
leading axis, gradients by `torch.func.vmap(grad(...))`, and SGD/Adam updates written for the
stack with one LR per candidate.

Used when the model allows it: no buffers that training changes (BatchNorm's running
statistics cannot be updated under vmap), a single param group, an optimizer whose update is
implemented here (SGD with momentum/Nesterov/weight decay, Adam, AdamW), plain ``(inputs,
target)`` batches, and no AMP. `supported` says whether a case qualifies; otherwise the
verification trains the candidates one after the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, vmap

from lrkit.finder._sweep import Batches, LossFn, _to, batch_size, pieces
from lrkit.schedules import Schedule


def supported(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """None when the vectorized path applies, else the reason it does not."""
    if any(isinstance(m, torch.nn.RNNBase) for m in model.modules()):
        return "recurrent layers have no fast vmap rule on every device"
    if any(b.is_floating_point() or b.dtype != torch.long for b in model.buffers()):
        return "the model has buffers (e.g. BatchNorm statistics)"
    if type(optimizer) not in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        return f"{type(optimizer).__name__} is not vectorized (SGD, Adam and AdamW are)"
    if len(optimizer.param_groups) != 1:
        return "the optimizer has several param groups"
    g = optimizer.param_groups[0]
    if g.get("amsgrad") or g.get("maximize") or g.get("dampening", 0) or isinstance(g["lr"], torch.Tensor):
        return "the optimizer uses options that are not vectorized (amsgrad, maximize, dampening, tensor LR)"
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if {id(p) for p in g["params"]} != trainable:
        return "the optimizer does not hold exactly the model's trainable parameters"
    return None


def _broadcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


class _StackedOptimizer:
    """SGD / Adam / AdamW updates on stacked parameters, with a per-candidate LR vector."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: dict[str, torch.Tensor]) -> None:
        g = optimizer.param_groups[0]
        self.kind = (
            "sgd"
            if isinstance(optimizer, torch.optim.SGD)
            else ("adamw" if isinstance(optimizer, torch.optim.AdamW) else "adam")
        )
        self.g = g
        self.state: dict[str, dict[str, torch.Tensor]] = {n: {} for n in params}
        self.t = 0

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        g, self.t = self.g, self.t + 1
        wd = float(g.get("weight_decay", 0.0))
        for name, p in params.items():
            d = grads[name]
            s = self.state[name]
            step = _broadcast(lr, p)
            if self.kind == "sgd":
                if wd:
                    d = d + wd * p
                mom = float(g.get("momentum", 0.0))
                if mom:
                    buf = s.get("buf")
                    buf = d.clone() if buf is None else buf.mul_(mom).add_(d)
                    s["buf"] = buf
                    d = d + mom * buf if g.get("nesterov") else buf
                p.sub_(step * d)
                continue
            b1, b2 = (float(b) for b in g["betas"])
            eps = float(g["eps"])
            if self.kind == "adamw":
                p.mul_(1 - step * wd)
            elif wd:
                d = d + wd * p
            m = s.setdefault("m", torch.zeros_like(p))
            v = s.setdefault("v", torch.zeros_like(p))
            m.mul_(b1).add_(d, alpha=1 - b1)
            v.mul_(b2).addcmul_(d, d, value=1 - b2)
            denom = (v / (1 - b2**self.t)).sqrt_().add_(eps)
            p.sub_(step * (m / (1 - b1**self.t)) / denom)


def verify_stacked(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batches: Batches,
    candidates: list[float],
    shape: Schedule,
    steps: int,
    val_loader: Iterable[Any] | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Train every candidate for `steps` steps at once; the LR of candidate k at step t is
    ``candidates[k] * shape(t)``.

    Returns ``(samples, weights, steps)``: each candidate's losses on the same pieces, shape
    ``(candidates, pieces)`` (pieces of the validation batches, see `pieces`, or without
    `val_loader` the training losses of the last quarter of the steps; a row of inf when the
    candidate diverged), the pieces' sizes, and the optimizer steps applied per candidate.
    """
    device = next(model.parameters()).device
    k = len(candidates)
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())
    params = {
        n: p.detach().unsqueeze(0).repeat((k,) + (1,) * p.dim()).clone()
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    lrs = torch.tensor(candidates, dtype=next(iter(params.values())).dtype, device=device)
    factors = shape(np.arange(steps))
    opt = _StackedOptimizer(optimizer, params)

    def call(p: dict[str, torch.Tensor], x: Any) -> Any:
        args = (x,) if isinstance(x, torch.Tensor) else tuple(x)
        return functional_call(model, ({**p, **frozen}, buffers), args)

    def loss_one(p: dict[str, torch.Tensor], x: Any, y: Any) -> torch.Tensor:
        return loss_fn(call(p, x), y)

    train_step = vmap(grad_and_value(loss_one), in_dims=(0, None, None), randomness="same")
    tail: list[torch.Tensor] = []
    alive = torch.ones(k, dtype=torch.bool, device=device)
    model.train()
    for t in range(steps):
        batch = batches.next()
        x, y = _to(batch[0], device), _to(batch[1], device)
        grads, losses = train_step(params, x, y)
        alive &= torch.isfinite(losses)
        grads = {n: torch.where(_broadcast(alive, g), g, torch.zeros_like(g)) for n, g in grads.items()}
        opt.step(params, grads, lrs * float(factors[t]))
        if t >= steps - max(1, steps // 4):
            tail.append(losses.detach())
    if val_loader is not None:
        model.eval()
        forward = vmap(call, in_dims=(0, None), randomness="same")
        score = vmap(loss_fn, in_dims=(0, None), randomness="same")
        whole = vmap(loss_one, in_dims=(0, None, None), randomness="same")
        scored: list[torch.Tensor] = []
        sizes: list[float] = []
        with torch.no_grad():
            for batch in val_loader:
                x, y = _to(batch[0], device), _to(batch[1], device)
                n = batch_size(y)
                out = forward(params, x) if n is not None else None
                if n is None or not (isinstance(out, torch.Tensor) and out.dim() >= 2 and out.shape[1] == n):
                    scored.append(whole(params, x, y))
                    sizes.append(float(n or 1))
                    continue
                for sl in pieces(n):
                    scored.append(score(out[:, sl], y[sl]))
                    sizes.append(float(sl.stop - sl.start))
        if not scored:
            raise ValueError("`val_loader` yielded no batches")
        samples = torch.stack(scored, 1)
        weights = np.asarray(sizes)
    else:
        samples = torch.stack(tail, 1)
        weights = np.ones(samples.shape[1])
    out_np = samples.detach().cpu().double().numpy()
    out_np[~alive.cpu().numpy()] = math.inf
    out_np[~np.isfinite(out_np).all(axis=1)] = math.inf
    return out_np, weights, steps
