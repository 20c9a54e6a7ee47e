"""K-FAC natural gradient: `KFACPreconditioner`, for any torch optimizer.

The preconditioner replaces the gradients of a model's Linear, Conv2d and Embedding layers by
their damped natural-gradient directions (`lrkit.optim._kfac_math`); the optimizer that follows
sees only preconditioned gradients::

    precond = KFACPreconditioner(model, opt, kl_clip=1e-3)
    loss.backward()
    precond.step()
    opt.step()

References: Martens & Grosse (2015), "Optimizing Neural Networks with Kronecker-factored
Approximate Curvature"; Grosse & Martens (2016) for convolutions; Ba, Grosse & Martens (2017) for
KL clipping.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lrkit.optim import _kfac_math as km
from lrkit.optim._checks import check_interval, check_number, interval_at
from lrkit.schedules import Schedule

__all__ = ["KFACPreconditioner"]

_FACTORS = ("A", "G", "qa", "da", "qg", "dg")


def _read(value: Any) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


def _why_not(module: nn.Module) -> str | None:
    """Why K-FAC cannot precondition `module` (None when it can)."""
    if isinstance(module, nn.Linear):
        return None
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            return "a Conv2d with groups, non-zero padding mode or string padding"
        return None
    if isinstance(module, nn.Embedding):
        return "a sparse or max_norm Embedding" if module.sparse or module.max_norm is not None else None
    return type(module).__name__


def _wide(x: Tensor) -> Tensor:
    """Half-precision activations (mixed precision) become float32: factors and eigh need it."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@dataclass
class _Layer:
    """One preconditioned layer: what the hooks captured this step, and its factors.

    `weight` and `bias` are the trained ones (None when absent or frozen; at least one is set):
    the layer's K-FAC block is the Fisher block of its trained parameters only.
    """

    name: str
    module: nn.Module
    weight: Tensor | None
    bias: Tensor | None
    inputs: list[Tensor] = field(default_factory=list)
    #: The output gradient of each call, by the call's index in `inputs` (None until it arrives).
    grads: list[Tensor | None] = field(default_factory=list)
    factors: dict[str, Tensor | None] = field(default_factory=lambda: dict.fromkeys(_FACTORS))

    @property
    def param(self) -> Tensor:
        """The weight, or the bias when it is trained alone: its device and param group are the layer's."""
        p = self.weight if self.weight is not None else self.bias
        assert p is not None  # internal invariant: a layer has a trained parameter
        return p

    @property
    def recorded(self) -> bool:
        """Whether every call of this step has its input and its output gradient."""
        return bool(self.inputs) and all(g is not None for g in self.grads)

    def batch_factors(self) -> tuple[Tensor, Tensor]:
        """Factors of this step's minibatch, averaged over the module's calls.

        A bias trained alone has the constant input 1: its `A` is ``[[1]]``.
        """
        m = self.module
        sum_a: Tensor | None = None
        sum_g: Tensor | None = None
        for x, g in zip(self.inputs, self.grads, strict=True):
            if g is None:
                raise RuntimeError(f"KFAC: layer {self.name!r} has a call without its output gradient")
            if isinstance(m, nn.Embedding):
                a_f, g_f = km.embedding_factors(x, g, num=m.num_embeddings, batch_size=x.shape[0])
            else:
                if isinstance(m, nn.Conv2d):
                    g, n = g.movedim(1, -1), len(x)
                else:
                    n = x.shape[0] if x.ndim > 1 else 1
                if self.weight is None:  # one row of the constant input per row of output gradients
                    a = g.new_ones(g[..., 0].numel(), 1)
                else:
                    a = km.conv2d_patches(x, m) if isinstance(m, nn.Conv2d) else x
                homogeneous = self.weight is not None and self.bias is not None
                a_f, g_f = km.linear_factors(a, g, bias=homogeneous, batch_size=n)
            sum_a = a_f if sum_a is None else sum_a + a_f
            sum_g = g_f if sum_g is None else sum_g + g_f
        if sum_a is None or sum_g is None:
            raise RuntimeError(f"KFAC: layer {self.name!r} has no recorded batch")
        n = len(self.inputs)
        return sum_a / n, sum_g / n

    def gradient(self) -> Tensor | None:
        """The gradient of the layer's trained parameters as one matrix (``out x in``, the bias as
        the last column; a bias trained alone is the one column); None while one of them has none."""
        w = None if self.weight is None else self.weight.grad
        b = None if self.bias is None else self.bias.grad
        if (self.weight is not None and w is None) or (self.bias is not None and b is None):
            return None
        if w is None:
            return None if b is None else b[:, None]
        if isinstance(self.module, nn.Embedding):
            return w
        d = w.reshape(w.shape[0], -1)
        return d if b is None else torch.cat([d, b[:, None]], dim=1)

    def write(self, v: Tensor) -> None:
        """Store the preconditioned matrix `v` back into the trained parameters' gradients."""
        if self.weight is None:
            if self.bias is not None and self.bias.grad is not None:
                self.bias.grad.copy_(v[:, 0])
            return
        w = self.weight.grad
        if w is None:
            return
        if isinstance(self.module, nn.Embedding):
            w.copy_(v)
            return
        n = w[0].numel()
        w.copy_(v[:, :n].reshape(w.shape))
        if self.bias is not None and self.bias.grad is not None:
            self.bias.grad.copy_(v[:, n])


class KFACPreconditioner:
    """Turn the gradients of a model's Linear, Conv2d and Embedding layers into damped
    natural-gradient directions, in place, before any torch optimizer steps.

    Per layer, ``vec(V) = (A (x) G + damping I)^-1 vec(D)`` for its gradient matrix `D` (weight
    and bias together), with Kronecker factors `A` (inputs) and `G` (output gradients, the
    empirical Fisher of the loss that was backpropagated) kept as running averages
    ``F <- decay F + (1 - decay) F_batch``. Other layers that hold parameters (BatchNorm, LSTM,
    ...) keep their plain gradient; a warning names them once, when the preconditioner is built.

    The block is that of the parameters trained (``requires_grad``) when the preconditioner is
    built: a frozen bias is left out (`A` has no column of ones, and the weight is preconditioned
    alone), and a bias trained alone under a frozen weight (BitFit) has the constant input 1, so
    ``A = [[1]]`` and its direction is ``(G + damping I)^-1 g``. A layer called several times in
    one forward pass (shared weights) gets the mean of its calls' factors, each call's input
    paired with that call's own output gradient.

    Module hooks record the layers' inputs and output gradients only on the steps whose factors
    are updated (in training mode, with gradients enabled), so the other steps cost one product
    per layer and nothing else.

    Args:
        model: the module whose layers to precondition.
        optimizer: the optimizer that steps after this; KL clipping reads the LR of the param
            group that holds each layer's weight (its bias, when that is trained alone), so a
            scheduled LR needs no second copy. Layers whose weight (or lone bias) it does not hold
            are left alone. Needed when `kl_clip` is set.
        damping: `lambda` > 0, added to the eigenvalues of ``A (x) G``. The default, 0.1, is
            relative to inputs of unit variance; on lrkit's built-in tasks (seed 0) 1e-3, a common
            default elsewhere, trained worse on 5 of 6 tasks with minibatches of 32 to 64.
        factor_decay: the running average's `decay`, in [0, 1); the first estimate is the first
            minibatch's factors.
        factor_update: steps between factor updates: an int >= 1 or an lrkit `Schedule` of the
            step (its value rounded; the next update is due that many steps after this one).
        inverse_update: steps between eigendecompositions of the factors (int >= 1 or Schedule).
        kl_clip: None, or > 0: scale all preconditioned gradients by
            ``nu = min(1, sqrt(kl_clip / sum_l lr_l^2 <V_l, D_l>))`` (Ba et al., 2017).

    `state_dict` holds the step counters and every factor and eigenbasis, so a run resumed from it
    continues bit for bit.

    >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> precond = KFACPreconditioner(model, opt, kl_clip=1e-3)
    >>> model(torch.randn(8, 3)).pow(2).mean().backward()
    >>> precond.step(); opt.step()
    >>> precond.steps, sorted(precond.layers), 0.0 < precond.last_nu <= 1.0
    (1, ['0', '2'], True)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        damping: float = 0.1,
        factor_decay: float = 0.95,
        factor_update: int | Schedule = 1,
        inverse_update: int | Schedule = 10,
        kl_clip: float | None = None,
    ) -> None:
        me = "KFACPreconditioner"
        if not isinstance(model, nn.Module):
            raise TypeError(f"{me}: `model` must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"{me}: `optimizer` must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
            )
        self.damping = check_number(me, "damping", damping, low=0.0, low_open=True)
        self.factor_decay = check_number(me, "factor_decay", factor_decay, low=0.0, high=1.0, high_open=True)
        self.factor_update = check_interval(me, "factor_update", factor_update)
        self.inverse_update = check_interval(me, "inverse_update", inverse_update)
        if kl_clip is not None:
            kl_clip = check_number(me, "kl_clip", kl_clip, low=0.0, low_open=True)
            if optimizer is None:
                raise ValueError(
                    f"{me}: kl_clip={kl_clip!r} reads the LR from the optimizer; pass `optimizer` "
                    f"or set kl_clip=None"
                )
        self.kl_clip = kl_clip
        self.optimizer = optimizer
        held = None if optimizer is None else {id(p) for g in optimizer.param_groups for p in g["params"]}
        #: The preconditioned layers by module name.
        self.layers: dict[str, _Layer] = {}
        #: ``(name, reason)`` of the modules with parameters that keep their plain gradient.
        self.skipped: list[tuple[str, str]] = []
        self._hooks = []
        for name, module in model.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if not own or (held is not None and not any(id(p) in held for p in own)):
                continue
            weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
            # the trained ones: a frozen parameter is no part of the layer's block
            weight = weight if isinstance(weight, Tensor) and weight.requires_grad else None
            bias = bias if isinstance(bias, Tensor) and bias.requires_grad else None
            first = weight if weight is not None else bias
            if held is not None and first is not None and id(first) not in held:
                self.skipped.append(
                    (name, f"its {'weight' if first is weight else 'bias'} is not in the optimizer")
                )
                continue
            why = _why_not(module)
            if why is None and first is None:  # a subclass's own parameter is trained
                why = "its weight and bias are frozen"
            if why is not None:
                self.skipped.append((name, why))
                continue
            layer = _Layer(name, module, weight, bias)
            self.layers[name] = layer
            hook = functools.partial(self._capture, layer)
            self._hooks.append(module.register_forward_hook(hook, with_kwargs=True))
        #: Calls of `step` so far.
        self.steps = 0
        self.next_factor = 0
        self.next_inverse = 0
        #: The KL-clipping factor of the last step (1.0 without clipping).
        self.last_nu = 1.0
        if self.skipped:
            kinds = ", ".join(f"{n or '<model>'} ({why})" for n, why in self.skipped)
            warnings.warn(
                f"{me}: {len(self.skipped)} module(s) cannot be preconditioned and keep the plain "
                f"gradient: {kinds}",
                UserWarning,
                stacklevel=2,
            )

    @property
    def collecting(self) -> bool:
        """Whether the hooks record the current step (its factors are due)."""
        return self.steps >= self.next_factor

    def _capture(
        self, layer: _Layer, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        """Forward hook: record the call's input, and its output gradient when backward reaches it.

        Each call's gradient is stored at the call's own index: backward meets the calls in its own
        order (the reverse of the forward, for calls in sequence), not in the order they were made.
        """
        if not (module.training and torch.is_grad_enabled() and self.collecting):
            return
        if not isinstance(output, Tensor) or not output.requires_grad:
            return
        x = args[0] if args else kwargs.get("input")  # Linear, Conv2d and Embedding name it `input`
        if not isinstance(x, Tensor):
            return
        x = _wide(x.detach())
        if isinstance(module, nn.Conv2d) and x.ndim == 3:
            x = x[None]
        call = len(layer.inputs)
        layer.inputs.append(x)
        layer.grads.append(None)
        unbatched = isinstance(module, nn.Conv2d) and output.ndim == 3

        def keep(g: Tensor) -> None:
            g = _wide(g.detach())
            layer.grads[call] = g[None] if unbatched else g

        output.register_hook(keep)

    def _lrs(self) -> dict[int, float]:
        if self.optimizer is None:
            return {}
        return {id(p): _read(g["lr"]) for g in self.optimizer.param_groups for p in g["params"]}

    @torch.no_grad()
    def step(self) -> None:
        """Update the factors and eigenbases when due, then precondition the gradients in place."""
        me = "KFACPreconditioner"
        step = self.steps
        if step >= self.next_factor:
            for layer in self.layers.values():
                if layer.recorded:
                    a, g = layer.batch_factors()
                    f = layer.factors
                    f["A"] = km.running_average(f["A"], a, self.factor_decay)
                    f["G"] = km.running_average(f["G"], g, self.factor_decay)
            self.next_factor = step + interval_at(me, "factor_update", self.factor_update, step)
        inverse_due = step >= self.next_inverse
        for layer in self.layers.values():
            layer.inputs.clear()
            layer.grads.clear()
            f = layer.factors
            if f["A"] is not None and f["G"] is not None and (inverse_due or f["dg"] is None):
                f["qa"], f["da"] = km.eigen(f["A"])
                f["qg"], f["dg"] = km.eigen(f["G"])
        if inverse_due:
            self.next_inverse = step + interval_at(me, "inverse_update", self.inverse_update, step)
        done: list[tuple[_Layer, Tensor]] = []
        vg = 0.0
        lrs = self._lrs()
        for layer in self.layers.values():
            f = layer.factors
            d = layer.gradient()
            if d is None or f["dg"] is None:
                continue
            qa, da, qg, dg = f["qa"], f["da"], f["qg"], f["dg"]
            assert qa is not None and da is not None and qg is not None
            if isinstance(layer.module, nn.Embedding):
                v = km.precondition_embedding(d, da, qg, dg, self.damping)
            else:
                v = km.precondition_matrix(d, qa, da, qg, dg, self.damping)
            if self.kl_clip is not None:
                vg += lrs[id(layer.param)] ** 2 * float((v * d).sum())
            done.append((layer, v))
        self.last_nu = 1.0 if self.kl_clip is None else km.kl_clip_factor(vg, self.kl_clip)
        for layer, v in done:
            layer.write(v if self.last_nu == 1.0 else v * self.last_nu)
        self.steps += 1

    def remove(self) -> None:
        """Remove the module hooks; the preconditioner stops recording."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def state_dict(self) -> dict[str, Any]:
        """Plain data: ``steps``, ``next_factor``, ``next_inverse``, ``last_nu`` and, per layer
        name, its factors ``A``, ``G`` and eigenbases ``qa``, ``da``, ``qg``, ``dg`` (None before
        the first update). Settings (damping, intervals) are constructor arguments, not state."""
        return {
            "steps": self.steps,
            "next_factor": self.next_factor,
            "next_inverse": self.next_inverse,
            "last_nu": self.last_nu,
            "layers": {
                name: {k: (None if t is None else t.clone()) for k, t in layer.factors.items()}
                for name, layer in self.layers.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` output of a preconditioner over the same layers.

        Raises:
            ValueError: the state is not a K-FAC state or names other layers.
        """
        if not isinstance(state, dict) or not {"steps", "layers"} <= set(state):
            raise ValueError("KFACPreconditioner.load_state_dict: expected the output of state_dict()")
        if set(state["layers"]) != set(self.layers):
            raise ValueError(
                f"KFACPreconditioner.load_state_dict: the state has layers {sorted(state['layers'])}, "
                f"this preconditioner has {sorted(self.layers)}"
            )
        self.steps = int(state["steps"])
        self.next_factor = int(state["next_factor"])
        self.next_inverse = int(state["next_inverse"])
        self.last_nu = float(state["last_nu"])
        for name, layer in self.layers.items():
            device = layer.param.device
            saved = state["layers"][name]
            layer.factors = {
                k: (None if saved.get(k) is None else saved[k].to(device, copy=True)) for k in _FACTORS
            }
