"""Prodigy: Adam whose step size ``d`` estimates the distance to the solution as it goes.

Mishchenko & Defazio (2024), "Prodigy: An Expeditiously Adaptive Parameter-Free Learner", ICML,
Algorithm 4 (the Adam version). With ``gamma_k`` the LR multiplier and ``d_0`` a small start::

    m_{k+1} = beta1 m_k + (1 - beta1) d_k g_k
    v_{k+1} = beta2 v_k + (1 - beta2) d_k^2 g_k^2
    r_{k+1} = sqrt(beta2) r_k + (1 - sqrt(beta2)) gamma_k d_k^2 <g_k, x_0 - x_k>
    s_{k+1} = sqrt(beta2) s_k + (1 - sqrt(beta2)) gamma_k d_k^2 g_k
    d_{k+1} = max(d_k, r_{k+1} / ||s_{k+1}||_1)
    x_{k+1} = x_k - gamma_k d_k m_{k+1} / (sqrt(v_{k+1}) + d_k eps)

The step actually taken is ``gamma_k * d_k`` per unit of Adam's normalized direction; that is
`Prodigy.effective_lr`, not the multiplier ``lr`` (a common confusion with Prodigy).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from lrkit.optim._checks import check_number

__all__ = ["Prodigy", "prodigy_moments"]


def prodigy_moments(
    p: Tensor, g: Tensor, state: dict[str, Tensor], *, d: float, lr: float, beta1: float, beta2: float
) -> tuple[float, float]:
    """Update one tensor's ``m``, ``v`` and ``s`` in `state` for the step with estimate `d`, and
    return its contributions ``(gamma d^2 <g, x_0 - x>, ||s||_1)`` to ``r`` and to the norm."""
    root = math.sqrt(beta2)
    state["m"].mul_(beta1).add_(g, alpha=(1.0 - beta1) * d)
    state["v"].mul_(beta2).addcmul_(g, g, value=(1.0 - beta2) * d * d)
    dot = float(torch.dot(g.reshape(-1).double(), (state["x0"] - p).reshape(-1).double()))
    state["s"].mul_(root).add_(g, alpha=(1.0 - root) * lr * d * d)
    return lr * d * d * dot, float(state["s"].double().abs().sum())


class Prodigy(torch.optim.Optimizer):
    """Prodigy (Adam version) with ``lr`` as a multiplier of its own step-size estimate ``d``.

    Args:
        params: the parameters or param groups.
        lr: the multiplier ``gamma_k``, > 0 (default 1.0, the paper's). A schedule on ``lr``
            (`lrkit.adapters.torch.ScheduleLR`) multiplies the adapted step, e.g. a cosine decay.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: added to ``sqrt(v)`` (scaled by ``d``), > 0.
        weight_decay: decoupled weight decay ``x <- x - gamma d wd x``, >= 0.
        d0: the initial estimate ``d_0``, > 0 (a strict underestimate is intended).

    ``d`` and ``r`` are shared by all param groups; they are plain floats kept in every group (so
    they travel with ``state_dict``), with ``last_step``, the group's ``lr * d`` of the last step.

    >>> model = torch.nn.Linear(3, 1)
    >>> opt = Prodigy(model.parameters())
    >>> opt.effective_lr()  # before any step: lr * d0
    1e-06
    """

    #: ``lr`` is a multiplier of the step size Prodigy sets itself; see
    #: `OptimizerSpec.learning_rate_free`.
    learning_rate_free: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        d0: float = 1e-6,
    ) -> None:
        me = "Prodigy"
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{me}: `betas` must be a pair (beta1, beta2), got betas={betas!r}")
        for i, b in enumerate(betas):
            check_number(me, f"betas[{i}]", b, low=0.0, high=1.0, high_open=True)
        defaults = {
            "lr": check_number(me, "lr", lr, low=0.0, low_open=True),
            "betas": (float(betas[0]), float(betas[1])),
            "eps": check_number(me, "eps", eps, low=0.0, low_open=True),
            "weight_decay": check_number(me, "weight_decay", weight_decay, low=0.0),
            "d": check_number(me, "d0", d0, low=0.0, low_open=True),
            "last_step": math.nan,
            "r": 0.0,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Take one Prodigy step with the current gradients (parameters without one are skipped)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        first = self.param_groups[0]
        d, r = float(first["d"]), float(first["r"])
        root = math.sqrt(first["betas"][1])
        r_new, s_norm = root * r, 0.0
        todo = []
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr = float(group["lr"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["x0"] = p.detach().clone()
                    st["m"], st["v"], st["s"] = (torch.zeros_like(p) for _ in range(3))
                dr, ds = prodigy_moments(p, p.grad, st, d=d, lr=lr, beta1=beta1, beta2=beta2)
                r_new += (1.0 - root) * dr
                s_norm += ds
                todo.append((p, st, group))
        if not todo:
            return loss
        d_next = max(d, r_new / s_norm) if s_norm > 0.0 else d
        for p, st, group in todo:
            lr, wd = float(group["lr"]), group["weight_decay"]
            if wd != 0.0:
                p.mul_(1.0 - lr * d * wd)
            p.addcdiv_(st["m"], st["v"].sqrt().add_(d * group["eps"]), value=-lr * d)
        for group in self.param_groups:
            group["d"], group["r"], group["last_step"] = d_next, r_new, float(group["lr"]) * d
        return loss

    @property
    def d(self) -> float:
        """The current estimate ``d_k`` (the one the next step uses)."""
        return float(self.param_groups[0]["d"])

    def effective_lr(self) -> float:
        """The first group's step size ``lr * d`` in the last step (``lr * d0`` before any), with
        the ``lr`` and ``d`` that step used."""
        group = self.param_groups[0]
        last = float(group["last_step"])
        return last if math.isfinite(last) else float(group["lr"]) * float(group["d"])
