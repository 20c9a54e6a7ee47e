"""`KFAC`: SGD with momentum on K-FAC natural-gradient directions, a ready optimizer.

See `lrkit.optim.KFACPreconditioner` for the maths and the references.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lrkit.optim._checks import check_number
from lrkit.optim._kfac import KFACPreconditioner
from lrkit.schedules import Schedule

__all__ = ["KFAC", "sgd_step"]


def _read(value: Any) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


def sgd_step(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
) -> list[Tensor | None]:
    """torch's SGD update (no dampening), in place; returns the momentum buffers.

    ``d = g + wd p``; ``b = momentum b + d`` (``b = d`` on the first step); ``d = d + momentum b``
    with Nesterov, else ``d = b``; ``p = p - lr d``. Without momentum the buffers stay None.

    >>> p = torch.tensor([1.0])
    >>> bufs = sgd_step([p], [torch.tensor([2.0])], [None], lr=0.1, momentum=0.9, weight_decay=0.0,
    ...                 nesterov=False)
    >>> p.tolist(), bufs[0].tolist()
    ([0.800000011920929], [2.0])
    """
    out: list[Tensor | None] = []
    for p, g, b in zip(params, grads, buffers, strict=True):
        d = g if weight_decay == 0.0 else g.add(p, alpha=weight_decay)
        if momentum != 0.0:
            b = d.detach().clone() if b is None else b.mul_(momentum).add_(d)
            d = d.add(b, alpha=momentum) if nesterov else b
        p.add_(d, alpha=-lr)
        out.append(b)
    return out


class KFAC(torch.optim.Optimizer):
    """SGD (with momentum) on K-FAC natural-gradient directions: `KFACPreconditioner` + SGD.

    ``step()`` preconditions the gradients (`KFACPreconditioner.step`) and then takes an SGD step
    with them (`sgd_step`, torch's update rule), so ``lr``, ``momentum`` and ``weight_decay`` mean
    what they mean for ``torch.optim.SGD``, and a schedule on ``lr``
    (`lrkit.adapters.torch.ScheduleLR`) also drives the KL clipping.

    Args:
        model: the module to train (K-FAC needs its layers, not only its parameters).
        lr: the LR, > 0.
        momentum: heavy-ball momentum in [0, 1).
        weight_decay: L2 penalty added to the preconditioned gradient, >= 0.
        nesterov: Nesterov momentum (needs momentum > 0).
        damping, factor_decay, factor_update, inverse_update, kl_clip: as for
            `KFACPreconditioner` (KL clipping on by default here).

    >>> model = nn.Linear(4, 2)
    >>> opt = KFAC(model, lr=0.1)
    >>> model(torch.randn(16, 4)).pow(2).mean().backward()
    >>> opt.step()
    >>> opt.preconditioner.steps, opt.effective_lr() <= 0.1
    (1, True)
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.1,
        *,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        damping: float = 0.1,
        factor_decay: float = 0.95,
        factor_update: int | Schedule = 1,
        inverse_update: int | Schedule = 10,
        kl_clip: float | None = 1e-3,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"KFAC: `model` must be the torch.nn.Module to train (K-FAC needs its layers), "
                f"got {type(model).__name__}"
            )
        defaults = {
            "lr": check_number("KFAC", "lr", lr, low=0.0, low_open=True),
            "momentum": check_number("KFAC", "momentum", momentum, low=0.0, high=1.0, high_open=True),
            "weight_decay": check_number("KFAC", "weight_decay", weight_decay, low=0.0),
            "nesterov": bool(nesterov),
        }
        if nesterov and defaults["momentum"] == 0.0:
            raise ValueError(f"KFAC: nesterov=True needs `momentum` > 0, got momentum={momentum!r}")
        super().__init__(model.parameters(), defaults)
        self.preconditioner = KFACPreconditioner(
            model,
            self,
            damping=damping,
            factor_decay=factor_decay,
            factor_update=factor_update,
            inverse_update=inverse_update,
            kl_clip=kl_clip,
        )
        self._last_step = math.nan

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Precondition the gradients, then take the SGD step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.preconditioner.step()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            lr = _read(group["lr"])
            new = sgd_step(
                params,
                grads,
                buffers,
                lr=lr,
                momentum=_read(group["momentum"]),
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
            )
            for p, b in zip(params, new, strict=True):
                if b is not None:
                    self.state[p]["momentum_buffer"] = b
        self._last_step = _read(self.param_groups[0]["lr"]) * self.preconditioner.last_nu
        return loss

    def effective_lr(self) -> float:
        """The first group's LR times the KL-clipping factor, as used by the last step (the
        current LR times the last factor before any step)."""
        if math.isfinite(self._last_step):
            return self._last_step
        return _read(self.param_groups[0]["lr"]) * self.preconditioner.last_nu

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim.Optimizer pickles (and deep-copies) only its defaults, state and param
        # groups; a KFAC without its preconditioner cannot step. The preconditioner holds the
        # model, so a copy of the optimizer alone preconditions a copy of the model, and
        # ``copy.deepcopy((model, optimizer))`` gives a pair that trains like the original.
        state = super().__getstate__()
        state["preconditioner"] = self.preconditioner
        state["_last_step"] = self._last_step
        return state

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state dict (momentum buffers), the preconditioner's under ``"kfac"``
        and, under ``"last_step"``, the float `effective_lr` reports (NaN before the first step)."""
        state = super().state_dict()
        state["kfac"] = self.preconditioner.state_dict()
        state["last_step"] = self._last_step
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict` output (the optimizer's part, the preconditioner's and the last
        step size; a state saved without it counts as one before the first step)."""
        state = dict(state_dict)
        kfac = state.pop("kfac", None)
        last_step = float(state.pop("last_step", math.nan))
        if kfac is None:
            raise ValueError("KFAC.load_state_dict: the state has no 'kfac' entry; it is not a KFAC state")
        super().load_state_dict(state)
        self.preconditioner.load_state_dict(kfac)
        self._last_step = last_step
