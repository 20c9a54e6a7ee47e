"""Save and restore everything a range test touches, bit for bit, without a second copy of the
model on the accelerator: parameters, buffers, gradients, train/eval modes, the optimizer's
state and hyperparameters (and any parameter it updates outside the model, such as a learnable
temperature in the loss), an attached scheduler, a gradient scaler's scale, and the Python,
NumPy and torch RNG states."""

from __future__ import annotations

import copy
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrkit._modes import modes_now


def _to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor copied to the CPU (never aliasing the original)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _has_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor) or (
        isinstance(v, (tuple, list)) and any(isinstance(x, torch.Tensor) for x in v)
    )


def _copy_into(original: Any, loaded: Any) -> Any:
    """Copy `loaded` values into the tensors of `original` and return `original`."""
    if isinstance(original, torch.Tensor):
        with torch.no_grad():
            original.copy_(torch.as_tensor(loaded))
        return original
    if isinstance(original, (tuple, list)) and isinstance(loaded, (tuple, list)):
        items = [
            _copy_into(o, x) if isinstance(o, torch.Tensor) else x
            for o, x in zip(original, loaded, strict=True)
        ]
        return type(original)(items)
    return loaded


def _grad_copy(p: torch.Tensor) -> torch.Tensor | None:
    return None if p.grad is None else p.grad.detach().to("cpu", copy=True)


class Snapshot:
    """The state of a model, optimizer, optional scheduler and scaler, and the RNGs at one moment.

    Args:
        model, optimizer, scheduler: what to save (`scheduler` may be None).
        scaler: a ``torch.amp.GradScaler`` (or None) whose scale and growth tracker the sweep
            changes as it skips steps.
        to_disk: keep the tensors in a temporary file (in `directory`, default the system's
            temporary folder) instead of CPU memory; the file is deleted by `discard`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        *,
        scaler: Any = None,
        to_disk: bool = False,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        # plain numbers: the scale, the growth and backoff factors and the growth tracker
        self._scaler_state = None if self.scaler is None else copy.deepcopy(self.scaler.state_dict())
        self._restore_modes = modes_now(model)
        # the objects of tensor hyperparameters (a tensor LR a compiled step depends on, which
        # groups may share with each other and with the optimizer's defaults): restored in place
        self._group_tensors = [
            {k: v for k, v in g.items() if k != "params" and _has_tensor(v)} for g in optimizer.param_groups
        ]
        self._defaults = dict(optimizer.defaults)
        self._python_rng = random.getstate()
        self._numpy_rng = np.random.get_state()
        # parameters the optimizer updates that are not the model's (a loss's own weights)
        own = {id(p) for p in model.parameters()}
        self._extra = list(
            {id(p): p for g in optimizer.param_groups for p in g["params"] if id(p) not in own}.values()
        )
        model_state = model.state_dict()
        # buffers registered with persistent=False are not in the state dict: kept by module
        self._transient = [
            (module, name, buf)
            for module in model.modules()
            for name, buf in module._buffers.items()
            if buf is not None and name in module._non_persistent_buffers_set
        ]
        state: dict[str, Any] = {
            "model": _to_cpu(model_state),
            "transient": [buf.detach().to("cpu", copy=True) for _, _, buf in self._transient],
            "grads": [_grad_copy(p) for p in model.parameters()],
            "extra": [p.detach().to("cpu", copy=True) for p in self._extra],
            "extra_grads": [_grad_copy(p) for p in self._extra],
            "optimizer": _to_cpu(optimizer.state_dict()),
            "scheduler": None if scheduler is None else _to_cpu(scheduler.state_dict()),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        self._path: Path | None = None
        self._state: dict[str, Any] | None = None
        if to_disk:
            folder = Path(directory) if directory is not None else Path(tempfile.gettempdir())
            if not folder.is_dir():
                raise ValueError(f"snapshot directory {str(folder)!r} does not exist")
            fd, name = tempfile.mkstemp(prefix="lrkit-snapshot-", suffix=".pt", dir=folder)
            os.close(fd)
            self._path = Path(name)
            try:
                torch.save(state, self._path)
            except BaseException:
                self._path.unlink(missing_ok=True)
                raise
        else:
            self._state = state

    def _load(self) -> dict[str, Any]:
        if self._state is not None:
            return self._state
        assert self._path is not None  # internal invariant: one of the two is set
        return torch.load(self._path, map_location="cpu", weights_only=True)

    def restore(self) -> None:
        """Put everything back as it was when the snapshot was taken."""
        state = self._load()
        with torch.no_grad():
            self.model.load_state_dict(state["model"])
            for (module, name, buf), value in zip(self._transient, state["transient"], strict=True):
                buf.copy_(value)
                module._buffers[name] = buf  # the same object, also where the run replaced it
            for p, value in zip(self._extra, state["extra"], strict=True):
                p.copy_(value)
            params = [*self.model.parameters(), *self._extra]
            for p, g in zip(params, [*state["grads"], *state["extra_grads"]], strict=True):
                if g is None:
                    p.grad = None
                elif p.grad is not None and p.grad.shape == g.shape:
                    p.grad.copy_(g)
                else:
                    p.grad = g.to(p.device, copy=True)
        self._restore_modes()
        self._restore_optimizer(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))
        if self.scaler is not None:
            self.scaler.load_state_dict(copy.deepcopy(self._scaler_state))
        random.setstate(self._python_rng)
        np.random.set_state(self._numpy_rng)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def _restore_optimizer(self, saved: dict[str, Any]) -> None:
        opt = self.optimizer
        # torch replaces the hyperparameters of each group by the loaded ones; put the original
        # tensor objects back and copy the saved values into them.
        opt.state.clear()
        opt.load_state_dict(_to_cpu(saved))
        for group, kept in zip(opt.param_groups, self._group_tensors, strict=True):
            for key, original in kept.items():
                group[key] = _copy_into(original, group[key])
        opt.defaults.clear()
        opt.defaults.update(self._defaults)

    def discard(self) -> None:
        """Free the snapshot (and delete its file, if any)."""
        self._state = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
