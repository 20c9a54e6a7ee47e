"""DoG and L-DoG: SGD whose step size is the distance travelled over the root of the summed
squared gradient norms, no LR to tune.

Ivgi, Hinder & Carmon (2023), "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
Schedule", ICML. For iterates ``x_0, x_1, ...`` and gradients ``g_0, g_1, ...``::

    rbar_t = max(r_eps, max_{i <= t} ||x_i - x_0||),   r_eps = reps_rel * (1 + ||x_0||)
    eta_t  = rbar_t / sqrt(sum_{i <= t} ||g_i||^2)
    x_{t+1} = x_t - lr * eta_t * g_t

`lr` is a multiplier (1 is DoG itself), so an lrkit schedule on it shapes DoG's step. DoG takes
the norms over all tensors of a param group; L-DoG (``layer_wise=True``) over each tensor alone.
The paper's optional iterate averaging is not included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from lrkit.optim._checks import check_number

__all__ = ["DoG", "dog_step"]


def _sq(tensors: Iterable[Tensor]) -> float:
    return sum(float(t.double().pow(2).sum()) for t in tensors)


def dog_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    x0: Sequence[Tensor],
    rbar: float,
    gsum: float,
    lr: float,
) -> tuple[float, float, float]:
    """One DoG step over one set of tensors, in place; returns the new ``(rbar, gsum, eta)``.

    `rbar` and `gsum` are the previous step's (``r_eps`` and 0 before the first step); the norms
    are taken over all of `params` together.

    >>> x = torch.tensor([3.0, 4.0])
    >>> rbar, gsum, eta = dog_step([x], [x.clone()], [x.clone()], rbar=0.6, gsum=0.0, lr=1.0)
    >>> round(eta, 6), x.tolist()  # eta = 0.6 / ||(3, 4)||, x <- (1 - eta) x
    (0.12, [2.640000104904175, 3.5199999809265137])
    """
    rbar = max(rbar, math.sqrt(_sq(p - a for p, a in zip(params, x0, strict=True))))
    gsum += _sq(grads)
    eta = rbar / math.sqrt(gsum) if gsum > 0.0 else 0.0
    for p, g in zip(params, grads, strict=True):
        p.add_(g, alpha=-lr * eta)
    return rbar, gsum, eta


class DoG(torch.optim.Optimizer):
    """DoG (or, with ``layer_wise=True``, L-DoG): SGD with a step size from distance over gradients.

    Args:
        params: the parameters or param groups.
        lr: a multiplier of DoG's step size, > 0 (default 1.0: DoG as published). Schedules
            driving ``lr`` scale the step.
        reps_rel: the first step's movement relative to ``1 + ||x_0||``, > 0 (the paper's 1e-6).
        weight_decay: L2 penalty added to the gradient, >= 0.
        layer_wise: L-DoG: one step size per tensor instead of one per param group.

    State (per group for DoG, per tensor for L-DoG): ``rbar``, ``gsum``, ``eta`` and ``last_step``
    (``lr * eta`` of the last step), plain floats, for L-DoG also ``last_gsq`` (the last squared
    gradient norm); per tensor ``x0``, the starting point.

    >>> model = torch.nn.Linear(3, 1)
    >>> opt = DoG(model.parameters())
    >>> model(torch.randn(8, 3)).pow(2).mean().backward()
    >>> opt.step()
    >>> 0.0 < opt.effective_lr() < 1e-4  # the first step only moves by about r_eps
    True
    """

    #: ``lr`` is a multiplier of the step size DoG sets itself; see `OptimizerSpec.learning_rate_free`.
    learning_rate_free: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        *,
        reps_rel: float = 1e-6,
        weight_decay: float = 0.0,
        layer_wise: bool = False,
    ) -> None:
        name = "LDoG" if layer_wise else "DoG"
        defaults = {
            "lr": check_number(name, "lr", lr, low=0.0, low_open=True),
            "reps_rel": check_number(name, "reps_rel", reps_rel, low=0.0, low_open=True),
            "weight_decay": check_number(name, "weight_decay", weight_decay, low=0.0),
            "layer_wise": bool(layer_wise),
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Take one DoG step with the current gradients (parameters without one are skipped)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr = float(group["lr"])
            wd = group["weight_decay"]
            grads = [p.grad if wd == 0.0 else p.grad.add(p, alpha=wd) for p in params]
            for p in params:
                if "x0" not in self.state[p]:
                    self.state[p]["x0"] = p.detach().clone()
            x0 = [self.state[p]["x0"] for p in params]
            if group["layer_wise"]:
                for p, g, a in zip(params, grads, x0, strict=True):
                    st = self.state[p]
                    if "rbar" not in st:
                        st["rbar"], st["gsum"] = group["reps_rel"] * (1.0 + math.sqrt(_sq([a]))), 0.0
                    gsum = st["gsum"]
                    st["rbar"], st["gsum"], st["eta"] = dog_step([p], [g], [a], st["rbar"], gsum, lr)
                    st["last_step"], st["last_gsq"] = lr * st["eta"], st["gsum"] - gsum
            else:
                if "rbar" not in group:
                    group["rbar"], group["gsum"] = group["reps_rel"] * (1.0 + math.sqrt(_sq(x0))), 0.0
                group["rbar"], group["gsum"], group["eta"] = dog_step(
                    params, grads, x0, group["rbar"], group["gsum"], lr
                )
                group["last_step"] = lr * group["eta"]
        return loss

    def effective_lr(self) -> float:
        """The first group's step size in the last step: ``lr * eta_t`` with the ``lr`` of that
        step; NaN before the first step.

        For L-DoG, whose tensors have step sizes ``s_i``, it is the one step size that moves as far
        with the same gradients: ``sqrt(sum_i s_i^2 ||g_i||^2 / sum_i ||g_i||^2)``.
        """
        group = self.param_groups[0]
        if not group["layer_wise"]:
            return float(group.get("last_step", math.nan))
        states = [self.state[p] for p in group["params"] if "last_step" in self.state.get(p, {})]
        gsq = sum(st["last_gsq"] for st in states)
        if not states or not gsq > 0.0:
            return math.nan
        return math.sqrt(sum(st["last_step"] ** 2 * st["last_gsq"] for st in states) / gsq)
