"""SGD, Adam and AdamW steps for candidate LRs stacked along a leading axis (see `_vectorized`).

Each of the optimizer's param groups keeps its own hyperparameters (momentum, betas, eps, weight
decay) and its LR scale: candidate k's LR in group g is ``scales[g] * (lrs[k] * factor)``, as
`lrkit.adapters.torch.ScheduleLR` sets it when the candidates train one after the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def _kind(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> str:
    if isinstance(optimizer, torch.optim.SGD):
        return "sgd"
    decoupled = isinstance(optimizer, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay"))
    return "adamw" if decoupled else "adam"


class _Group:
    """One param group's share of the stacked parameters and its optimizer state."""

    def __init__(
        self,
        kind: str,
        group: dict[str, Any],
        params: list[torch.Tensor],
        lrs: list[float],
        scale: float,
        buffered: bool,
    ) -> None:
        adam = kind != "sgd"
        self.kind = kind
        self.wd = float(group.get("weight_decay", 0.0))
        self.momentum = float(group.get("momentum", 0.0))
        self.nesterov = bool(group.get("nesterov", False))
        b1, b2 = (float(b) for b in group["betas"]) if adam else (0.0, 0.0)
        self.betas = (b1, b2)
        self.eps = float(group["eps"]) if adam else 0.0
        self.scale = scale
        self.params = params
        self.lrs = lrs
        first = params[0]
        self.lr_tensor = torch.tensor(lrs, dtype=first.dtype, device=first.device)
        self.shapes = [(-1,) + (1,) * (p.dim() - 1) for p in params]
        self.buf: list[torch.Tensor] | None = None
        self.m = [torch.zeros_like(p) for p in params] if adam else []
        self.v = [torch.zeros_like(p) for p in params] if adam else []
        # candidate k's slice of every stacked tensor, parameter-major: (p0[0], p0[1], ..., p1[0], ...)
        self.p_views = [view for x in params for view in x.unbind(0)]
        self.m_views = [view for x in self.m for view in x.unbind(0)]
        self.denom = [torch.empty_like(x) for x in self.v] if buffered and adam else []
        self.denom_views = [view for x in self.denom for view in x.unbind(0)]

    def _per_view(self, values: list[float]) -> list[float]:
        """One scalar per candidate (in the order of `lrs`), for every parameter's views."""
        return values * len(self.params)

    def step(self, grads: list[torch.Tensor], factor: float, t: int) -> None:
        d: list[torch.Tensor] = grads
        p = self.params
        if self.kind == "sgd":
            if self.wd:
                d = list(torch._foreach_add(d, p, alpha=self.wd))
            if self.momentum:
                if self.buf is None:
                    self.buf = [x.clone() for x in d]
                else:
                    torch._foreach_mul_(self.buf, self.momentum)
                    torch._foreach_add_(self.buf, d)
                d = list(torch._foreach_add(d, self.buf, alpha=self.momentum)) if self.nesterov else self.buf
            per_candidate = [self.lr_tensor.view(shape) for shape in self.shapes]
            torch._foreach_addcmul_(p, d, per_candidate, value=-(self.scale * factor))
            return
        b1, b2 = self.betas
        lrs = [self.scale * (lr * factor) for lr in self.lrs]
        if self.kind == "adamw" and self.wd:
            torch._foreach_mul_(self.p_views, self._per_view([1.0 - lr * self.wd for lr in lrs]))
        elif self.wd:
            d = list(torch._foreach_add(d, p, alpha=self.wd))
        torch._foreach_lerp_(self.m, d, 1.0 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, d, d, value=1.0 - b2)
        if self.denom:
            denom, views = self.denom, self.denom_views
            torch._foreach_copy_(denom, self.v)
            torch._foreach_sqrt_(denom)
        else:
            denom = list(torch._foreach_sqrt(self.v))
            views = [view for x in denom for view in x.unbind(0)]
        torch._foreach_div_(denom, math.sqrt(1.0 - b2**t))
        torch._foreach_add_(denom, self.eps)
        bias1 = 1.0 - b1**t
        steps = self._per_view([-lr / bias1 for lr in lrs])
        torch._foreach_addcdiv_(self.p_views, self.m_views, views, steps)


class StackedOptimizer:
    """SGD / Adam / AdamW updates on stacked parameters, candidate k at LR ``lrs[k] * factor``
    (times its param group's scale).

    The formulas of torch's kernels, written with `torch._foreach_*` ops over each group's
    parameters at once (one kernel call per operation and group, not per operation and
    parameter). SGD broadcasts each candidate's LR along the leading axis; Adam and AdamW take
    each candidate's slice of the stacked tensors as a view with its own scalar step size, which
    rounds as torch's own single-tensor step does and needs no stacked temporary for the step.

    Args:
        optimizer: the optimizer whose param groups give the hyperparameters (not stepped).
        params: the stacked parameters, ``(candidates, *shape)`` each.
        lrs: the candidates' LRs.
        groups: the index of each parameter's param group, in the order of `params` (default:
            all in group 0).
        scales: each param group's LR scale (default 1).
        buffered: keep Adam's denominator in a buffer across steps (default: on the CPU, where
            that is the fastest for small models; elsewhere it is a temporary of each step, so
            that memory holds no fifth stacked copy through the forward and backward passes: on
            a GPU, five candidates, 1.25 training states more at the peak with the buffer).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        params: dict[str, torch.Tensor],
        lrs: list[float],
        *,
        groups: Sequence[int] | None = None,
        scales: Sequence[float] | None = None,
        buffered: bool | None = None,
    ) -> None:
        stacked = list(params.values())
        index = list(groups) if groups is not None else [0] * len(stacked)
        if len(index) != len(stacked):
            raise ValueError(f"`groups` needs one index per parameter ({len(stacked)}), got {len(index)}")
        if buffered is None:
            buffered = stacked[0].device.type == "cpu"
        self.t = 0
        self._members: list[tuple[list[int], _Group]] = []
        for g, group in enumerate(optimizer.param_groups):
            members = [i for i, x in enumerate(index) if x == g]
            if members:
                scale = 1.0 if scales is None else float(scales[g])
                part = [stacked[i] for i in members]
                self._members.append(
                    (members, _Group(_kind(optimizer, group), group, part, list(lrs), scale, buffered))
                )

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], factor: float) -> None:
        """One update from `grads` (in the order of the parameters given to the constructor),
        at LR ``lrs * factor`` (times each group's scale)."""
        self.t += 1
        for members, group in self._members:
            group.step([grads[i] for i in members], factor, self.t)
