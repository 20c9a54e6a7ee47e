"""`KFAC`: SGD with momentum on K-FAC natural-gradient directions, a ready optimizer.

See `lrkit.optim.KFACPreconditioner` for the maths and the references.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lrkit.optim._checks import check_number
from lrkit.optim._kfac import KFACPreconditioner
from lrkit.schedules import Schedule

__all__ = ["KFAC"]


def _read(value: Any) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


class KFAC(torch.optim.SGD):
    """SGD (with momentum) on K-FAC natural-gradient directions: `KFACPreconditioner` + SGD.

    ``step()`` preconditions the gradients (`KFACPreconditioner.step`) and then takes torch's SGD
    step with them, so ``lr``, ``momentum`` and ``weight_decay`` mean what they mean for SGD and a
    schedule on ``lr`` (`lrkit.adapters.torch.ScheduleLR`) also drives the KL clipping.

    Args:
        model: the module to train (K-FAC needs its layers, not only its parameters).
        lr: the LR, > 0.
        momentum, weight_decay, nesterov: as for ``torch.optim.SGD``.
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
        lr = check_number("KFAC", "lr", lr, low=0.0, low_open=True)
        momentum = check_number("KFAC", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        weight_decay = check_number("KFAC", "weight_decay", weight_decay, low=0.0)
        super().__init__(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=bool(nesterov)
        )
        self.preconditioner = KFACPreconditioner(
            model,
            self,
            damping=damping,
            factor_decay=factor_decay,
            factor_update=factor_update,
            inverse_update=inverse_update,
            kl_clip=kl_clip,
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Precondition the gradients, then take the SGD step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.preconditioner.step()
        super().step()
        return loss

    def effective_lr(self) -> float:
        """The first group's LR times the KL-clipping factor of the last step."""
        return _read(self.param_groups[0]["lr"]) * self.preconditioner.last_nu

    def state_dict(self) -> dict[str, Any]:
        """SGD's state dict plus the preconditioner's under ``"kfac"``."""
        state = super().state_dict()
        state["kfac"] = self.preconditioner.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict` output (SGD's part and the preconditioner's)."""
        state = dict(state_dict)
        kfac = state.pop("kfac", None)
        if kfac is None:
            raise ValueError("KFAC.load_state_dict: the state has no 'kfac' entry; it is not a KFAC state")
        super().load_state_dict(state)
        self.preconditioner.load_state_dict(kfac)
