"""The train/eval modes of a model's submodules, kept to be put back (a frozen BatchNorm stays in
eval mode inside a model in train mode)."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["modes_now"]


def modes_now(model: torch.nn.Module) -> Callable[[], None]:
    """A function that puts every submodule of `model` back in the train/eval mode it has now."""
    modes = [(m, m.training) for m in model.modules()]

    def apply() -> None:
        for m, training in modes:
            m.training = training

    return apply
