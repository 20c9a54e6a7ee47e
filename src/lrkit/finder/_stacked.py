"""SGD, Adam, AdamW, RMSprop and Adagrad steps for candidate LRs stacked along a leading axis (see
`_vectorized`).

Each of the optimizer's param groups keeps its own hyperparameters (momentum, betas, eps, weight
decay, ...) and its LR scale: candidate k's LR in group g is ``scales[g] * (lrs[k] * factor)``,
as `lrkit.adapters.torch.ScheduleLR` sets it when the candidates train one after the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

#: The optimizers whose steps are written here.
STACKED = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad)


class _Group:
    """One param group's share of the stacked parameters and its optimizer state.

    Subclasses write one optimizer's step; the base keeps each candidate's slice of the stacked
    parameters as a view (parameter-major: ``p0[0], p0[1], ..., p1[0], ...``), so that an update
    with one scalar per candidate rounds as torch's own single-tensor step does.
    """

    def __init__(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        lrs: list[float],
        scale: float,
        buffered: bool,
    ) -> None:
        self.params = params
        self.lrs = lrs
        self.scale = scale
        self.buffered = buffered
        self.wd = float(group.get("weight_decay", 0.0))
        self.p_views = self.views(params)
        self._denom: list[torch.Tensor] = []
        self._denom_views: list[torch.Tensor] = []

    @staticmethod
    def views(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [view for x in tensors for view in x.unbind(0)]

    def per_view(self, values: list[float]) -> list[float]:
        """One scalar per candidate (in the order of `lrs`), for every parameter's views."""
        return values * len(self.params)

    def group_lrs(self, factor: float) -> list[float]:
        return [self.scale * (lr * factor) for lr in self.lrs]

    def descend(self, d_views: list[torch.Tensor], lrs: list[float]) -> None:
        """``param.add_(d, alpha=-lr)`` for each candidate with its own scalar `lrs` entry (torch's
        rounding, which a tensor of LRs would not give), `d_views` in the order of `views`."""
        k = len(lrs)
        for c, lr in enumerate(lrs):
            torch._foreach_add_(self.p_views[c::k], d_views[c::k], alpha=-lr)

    def with_decay(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """The gradients plus L2 weight decay (``grad + wd * param``), as torch adds it."""
        return list(torch._foreach_add(grads, self.params, alpha=self.wd)) if self.wd else grads

    def sqrt_of(self, tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``sqrt(tensors)`` and its per-candidate views: on the CPU in a buffer rewritten every
        step with its views made once (the fastest for small models); elsewhere a temporary of
        each step, so that memory holds no extra stacked copy through the forward and backward
        passes (on a GPU, five candidates: 1.25 training states more at the peak with the buffer)."""
        if not self.buffered:
            out = list(torch._foreach_sqrt(tensors))
            return out, self.views(out)
        if not self._denom:
            self._denom = [torch.empty_like(x) for x in tensors]
            self._denom_views = self.views(self._denom)
        torch._foreach_copy_(self._denom, tensors)
        torch._foreach_sqrt_(self._denom)
        return self._denom, self._denom_views

    def step(self, grads: list[torch.Tensor], factor: float, t: int) -> None:
        raise NotImplementedError


class _Sgd(_Group):
    """torch's SGD (momentum, heavy ball or Nesterov; L2 weight decay), bit for bit its
    single-tensor step."""

    def __init__(self, group: dict[str, Any], *args: Any) -> None:
        super().__init__(group, *args)
        self.momentum = float(group.get("momentum", 0.0))
        self.nesterov = bool(group.get("nesterov", False))
        self.buf: list[torch.Tensor] = []
        self.buf_views: list[torch.Tensor] = []

    def step(self, grads: list[torch.Tensor], factor: float, t: int) -> None:
        d = self.with_decay(grads)
        d_views: list[torch.Tensor] | None = None
        if self.momentum:
            if not self.buf:
                self.buf = [x.clone() for x in d]
                self.buf_views = self.views(self.buf)
            else:
                torch._foreach_mul_(self.buf, self.momentum)
                torch._foreach_add_(self.buf, d)
            if self.nesterov:
                d = list(torch._foreach_add(d, self.buf, alpha=self.momentum))
            else:
                d_views = self.buf_views
        if d_views is None:
            d_views = self.views(d)
        self.descend(d_views, self.group_lrs(factor))


class _Adam(_Group):
    """torch's Adam (L2 weight decay) and AdamW (decoupled), bit for bit its single-tensor step."""

    def __init__(self, group: dict[str, Any], *args: Any, decoupled: bool) -> None:
        super().__init__(group, *args)
        self.decoupled = decoupled
        self.b1, self.b2 = (float(b) for b in group["betas"])
        self.eps = float(group["eps"])
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.m_views = self.views(self.m)

    def step(self, grads: list[torch.Tensor], factor: float, t: int) -> None:
        lrs = self.group_lrs(factor)
        if self.decoupled:
            if self.wd:
                torch._foreach_mul_(self.p_views, self.per_view([1.0 - lr * self.wd for lr in lrs]))
            d = grads
        else:
            d = self.with_decay(grads)
        torch._foreach_lerp_(self.m, d, 1.0 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, d, d, value=1.0 - self.b2)
        denom, views = self.sqrt_of(self.v)
        torch._foreach_div_(denom, math.sqrt(1.0 - self.b2**t))
        torch._foreach_add_(denom, self.eps)
        bias1 = 1.0 - self.b1**t
        torch._foreach_addcdiv_(self.p_views, self.m_views, views, self.per_view([-lr / bias1 for lr in lrs]))


class _Rmsprop(_Group):
    """torch's RMSprop (plain or centered, with or without momentum), bit for bit its
    single-tensor step."""

    def __init__(self, group: dict[str, Any], *args: Any) -> None:
        super().__init__(group, *args)
        self.alpha = float(group["alpha"])
        self.eps = float(group["eps"])
        self.momentum = float(group.get("momentum", 0.0))
        self.centered = bool(group.get("centered", False))
        self.square_avg = [torch.zeros_like(p) for p in self.params]
        self.grad_avg = [torch.zeros_like(p) for p in self.params] if self.centered else []
        self.buf = [torch.zeros_like(p) for p in self.params] if self.momentum > 0 else []
        self.buf_views = self.views(self.buf)

    def step(self, grads: list[torch.Tensor], factor: float, t: int) -> None:
        lrs = self.group_lrs(factor)
        d = self.with_decay(grads)
        torch._foreach_mul_(self.square_avg, self.alpha)
        torch._foreach_addcmul_(self.square_avg, d, d, value=1.0 - self.alpha)
        if self.centered:
            torch._foreach_lerp_(self.grad_avg, d, 1.0 - self.alpha)
            avg = list(torch._foreach_addcmul(self.square_avg, self.grad_avg, self.grad_avg, value=-1.0))
            torch._foreach_sqrt_(avg)
            views = self.views(avg)
        else:
            avg, views = self.sqrt_of(self.square_avg)
        torch._foreach_add_(avg, self.eps)
        if self.momentum > 0:
            torch._foreach_mul_(self.buf, self.momentum)
            torch._foreach_addcdiv_(self.buf, d, avg)
            self.descend(self.buf_views, lrs)
        else:
            torch._foreach_addcdiv_(self.p_views, self.views(d), views, self.per_view([-lr for lr in lrs]))


class _Adagrad(_Group):
    """torch's Adagrad (with its LR decay and initial accumulator), bit for bit its
    single-tensor step."""

    def __init__(self, group: dict[str, Any], *args: Any) -> None:
        super().__init__(group, *args)
        self.eps = float(group["eps"])
        self.lr_decay = float(group.get("lr_decay", 0.0))
        start = float(group.get("initial_accumulator_value", 0.0))
        self.state_sum = [torch.full_like(p, start) for p in self.params]

    def step(self, grads: list[torch.Tensor], factor: float, t: int) -> None:
        lrs = [lr / (1 + (t - 1) * self.lr_decay) for lr in self.group_lrs(factor)]
        d = self.with_decay(grads)
        torch._foreach_addcmul_(self.state_sum, d, d, value=1.0)
        std, views = self.sqrt_of(self.state_sum)
        torch._foreach_add_(std, self.eps)
        torch._foreach_addcdiv_(self.p_views, self.views(d), views, self.per_view([-lr for lr in lrs]))


def _group_for(optimizer: torch.optim.Optimizer, group: dict[str, Any], *args: Any) -> _Group:
    if isinstance(optimizer, torch.optim.SGD):
        return _Sgd(group, *args)
    if isinstance(optimizer, torch.optim.RMSprop):
        return _Rmsprop(group, *args)
    if isinstance(optimizer, torch.optim.Adagrad):
        return _Adagrad(group, *args)
    decoupled = isinstance(optimizer, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay"))
    return _Adam(group, *args, decoupled=decoupled)


class StackedOptimizer:
    """The updates of torch's SGD, Adam, AdamW, RMSprop and Adagrad on stacked parameters,
    candidate k at LR ``lrs[k] * factor`` (times its param group's scale).

    The formulas of torch's kernels, written with `torch._foreach_*` ops over each group's
    parameters at once (one kernel call per operation and group, not per operation and
    parameter). Each candidate's slice of the stacked tensors is a view that takes its own scalar
    step size, which rounds as torch's own single-tensor step does and needs no stacked temporary
    for the step.

    Args:
        optimizer: the optimizer whose param groups give the hyperparameters (not stepped).
        params: the stacked parameters, ``(candidates, *shape)`` each.
        lrs: the candidates' LRs.
        groups: the index of each parameter's param group, in the order of `params` (default:
            all in group 0).
        scales: each param group's LR scale (default 1).
        buffered: keep the square roots of the second moments in a buffer across steps
            (default: on the CPU; see `_Group.sqrt_of`).
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
        if not isinstance(optimizer, STACKED):
            names = ", ".join(c.__name__ for c in STACKED)
            raise TypeError(f"StackedOptimizer: {type(optimizer).__name__} is not one of {names}")
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
                state = _group_for(optimizer, group, part, list(lrs), scale, buffered)
                self._members.append((members, state))

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], factor: float) -> None:
        """One update from `grads` (in the order of the parameters given to the constructor),
        at LR ``lrs * factor`` (times each group's scale)."""
        self.t += 1
        for members, group in self._members:
            group.step([grads[i] for i in members], factor, self.t)
