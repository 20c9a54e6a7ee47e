"""A registry of optimizers under plain names, each with a documented default LR: torch's own,
K-FAC and the learning-rate-free methods of this package.

The registry is an explicit dict (`REGISTRY`); `make` builds an optimizer by name, `names` lists
them and `get` returns the `OptimizerSpec` that says what a name means and why its default LR is
what it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from lrkit.optim._dog import DoG
from lrkit.optim._kfac_optimizer import KFAC
from lrkit.optim._prodigy import Prodigy

__all__ = ["REGISTRY", "OptimizerSpec", "get", "make", "names"]

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]] | torch.nn.Module


class _Builder:
    """Calls ``cls(params, lr=lr, **kwargs, **overrides)``; a plain object, not a lambda."""

    def __init__(self, cls: type[torch.optim.Optimizer], **kwargs: Any) -> None:
        self.cls = cls
        self.kwargs = MappingProxyType(dict(kwargs))

    def __call__(self, params: Params, lr: float, **overrides: Any) -> torch.optim.Optimizer:
        cls: Callable[..., torch.optim.Optimizer] = self.cls
        return cls(params, lr=lr, **{**self.kwargs, **overrides})

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.cls.__name__}(params, lr{args})"


@dataclass(frozen=True)
class OptimizerSpec:
    """What a registered optimizer name means.

    Attributes:
        name: the registry key.
        default_lr: the LR `make` uses when none is given (finite, > 0).
        reason: one line on where `default_lr` comes from.
        build: ``build(params, lr, **overrides) -> torch.optim.Optimizer``.
        kwargs: the settings the name fixes beyond the class's defaults (``momentum=0.9``...); any
            of them can be overridden by `make`'s keyword arguments.
        needs_model: the optimizer works on the model's layers (K-FAC), so `make` must be given
            the ``torch.nn.Module`` itself rather than its parameters.
        learning_rate_free: the optimizer sets its own step size and ``lr`` only multiplies it
            (DoG, L-DoG, Prodigy; default 1.0). The class says so with a class attribute
            ``learning_rate_free = True``, which `lrkit.find_lr` reads to refuse a range test over
            the multiplier; `compare(lrs="auto")` and ``space="auto"`` start from `default_lr`.

    >>> spec = get("momentum")
    >>> spec.default_lr, dict(spec.kwargs)
    (0.001, {'momentum': 0.9})
    >>> [n for n in names() if get(n).learning_rate_free]
    ['dog', 'ldog', 'prodigy']
    """

    name: str
    default_lr: float
    reason: str
    build: Callable[..., torch.optim.Optimizer]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    needs_model: bool = False
    learning_rate_free: bool = False


def _spec(
    name: str, default_lr: float, reason: str, cls: type[torch.optim.Optimizer], **kw: Any
) -> OptimizerSpec:
    return OptimizerSpec(
        name,
        default_lr,
        reason,
        _Builder(cls, **kw),
        MappingProxyType(dict(kw)),
        needs_model=cls is KFAC,
        learning_rate_free=getattr(cls, "learning_rate_free", False) is True,
    )


#: The registered optimizers by name.
REGISTRY: dict[str, OptimizerSpec] = {
    s.name: s
    for s in (
        _spec(
            "sgd",
            1e-2,
            "a common starting point for plain SGD on small models; torch's own default, 1e-3, "
            "usually under-trains without momentum",
            torch.optim.SGD,
        ),
        _spec(
            "momentum",
            1e-3,
            "heavy ball with momentum 0.9 settles at steps 1/(1-0.9) = 10x the LR, so 1e-3 moves "
            "as far per step as plain SGD at 1e-2",
            torch.optim.SGD,
            momentum=0.9,
        ),
        _spec(
            "nesterov",
            1e-3,
            "Nesterov momentum 0.9 has the same 10x steady-state step as heavy ball, so the same 1e-3",
            torch.optim.SGD,
            momentum=0.9,
            nesterov=True,
        ),
        _spec(
            "adagrad",
            1e-2,
            "torch's documented default; the accumulated squared gradients shrink the step, so it "
            "starts higher than Adam",
            torch.optim.Adagrad,
        ),
        _spec(
            "rmsprop",
            1e-3,
            "Keras' and TensorFlow's default; torch's 1e-2 often oscillates, since the normalized "
            "step is about the LR per coordinate",
            torch.optim.RMSprop,
        ),
        _spec(
            "adam",
            1e-3,
            "torch's documented default and the one Kingma & Ba (2015) recommend",
            torch.optim.Adam,
        ),
        _spec(
            "adamw",
            1e-3,
            "torch's documented default; decoupled weight decay 0.01 (torch's default) does not "
            "change the LR scale (Loshchilov & Hutter, 2019)",
            torch.optim.AdamW,
            weight_decay=0.01,
        ),
        _spec(
            "kfac",
            0.1,
            "K-FAC's steps are natural-gradient steps, about the right size at LR 1; with SGD "
            "momentum 0.9 (10x) and KL clipping 1e-3 bounding every step, 0.1 is the usual setting",
            KFAC,
        ),
        _spec(
            "dog",
            1.0,
            "learning-rate-free (Ivgi et al., 2023): the LR only multiplies DoG's own step size, "
            "so 1.0 is DoG as published",
            DoG,
        ),
        _spec(
            "ldog",
            1.0,
            "layer-wise DoG (Ivgi et al., 2023), one step size per tensor; the LR is a multiplier, "
            "1.0 is the method as published",
            DoG,
            layer_wise=True,
        ),
        _spec(
            "prodigy",
            1.0,
            "learning-rate-free Adam (Mishchenko & Defazio, 2024): the step is lr * d with d "
            "estimated on the fly, and the paper's multiplier is 1.0",
            Prodigy,
        ),
    )
}


def names() -> list[str]:
    """The registered optimizer names, in the registry's order.

    >>> names()
    ['sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam', 'adamw', 'kfac', 'dog', 'ldog', 'prodigy']
    """
    return list(REGISTRY)


def get(name: str) -> OptimizerSpec:
    """The `OptimizerSpec` registered as `name`.

    Raises:
        ValueError: unknown name; the message lists the valid ones.

    >>> get("adam").default_lr
    0.001
    """
    spec = REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(REGISTRY)}")
    return spec


def make(
    name: str, params: Params, lr: float | torch.Tensor | None = None, **overrides: Any
) -> torch.optim.Optimizer:
    """Build the optimizer `name` over `params`.

    Args:
        name: a registered name (`names`).
        params: the parameters (or param-group dicts) to optimize, or the ``torch.nn.Module``
            whose parameters to optimize (required by the names with `OptimizerSpec.needs_model`,
            such as ``"kfac"``).
        lr: the learning rate, finite and > 0; None uses the name's `OptimizerSpec.default_lr`. A
            one-element float tensor is given to the optimizer as it is (a tensor LR, which a
            ``torch.compile``d step reads without recompiling), where the optimizer takes one.
        **overrides: keyword arguments of the torch optimizer, replacing the name's settings
            (``make("momentum", params, momentum=0.95)``).

    Raises:
        ValueError: unknown name (listing the valid ones), a bad `lr`, or an override the
            optimizer rejects.

    >>> model = torch.nn.Linear(3, 1)
    >>> opt = make("nesterov", model.parameters())
    >>> type(opt).__name__, opt.defaults["lr"], opt.defaults["momentum"], opt.defaults["nesterov"]
    ('SGD', 0.001, 0.9, True)
    >>> make("adamw", model.parameters(), lr=3e-4).defaults["weight_decay"]
    0.01
    >>> type(make("kfac", model)).__name__, make("prodigy", model).defaults["lr"]
    ('KFAC', 1.0)
    """
    spec = get(name)
    if isinstance(params, torch.nn.Module):
        if not spec.needs_model:
            params = params.parameters()
    elif spec.needs_model:
        raise ValueError(
            f"make: optimizer {name!r} preconditions the model's layers; pass the torch.nn.Module "
            f"itself as `params`, not its parameters"
        )
    if lr is None:
        lr = spec.default_lr
    tensor_lr = isinstance(lr, torch.Tensor) and lr.numel() == 1 and lr.is_floating_point()
    value: Any = lr.item() if isinstance(lr, torch.Tensor) and tensor_lr else lr  # kept as a tensor
    if isinstance(value, np.floating):
        value = lr = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value < math.inf):
        raise ValueError(f"make: `lr` must be a finite number > 0 (or None for the default), got lr={lr!r}")
    try:
        return spec.build(params, lr if tensor_lr else float(value), **overrides)
    except (TypeError, ValueError) as e:  # torch's checks, in the caller's words
        if not overrides:
            raise ValueError(f"make: optimizer {name!r} ({spec.build!r}) cannot be built: {e}") from None
        given = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items()))
        raise ValueError(
            f"make: optimizer {name!r} ({spec.build!r}) rejects the arguments {sorted(overrides)} "
            f"({given}): {e}"
        ) from None
