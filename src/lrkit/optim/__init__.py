"""Optimizers: a registry of torch's own under plain names, each with a documented default LR,
plus K-FAC natural gradient and the learning-rate-free DoG, L-DoG and Prodigy.

The learning-rate-free optimizers and K-FAC have ``effective_lr()``: the step size they actually
used in their last step (``lr`` is only a multiplier of it for DoG and Prodigy).

>>> from lrkit.optim import get, make, names
>>> names()
['sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam', 'adamw', 'kfac', 'dog', 'ldog', 'prodigy']
>>> import torch
>>> opt = make("momentum", torch.nn.Linear(2, 1).parameters())
>>> opt.defaults["lr"], opt.defaults["momentum"]
(0.001, 0.9)
"""

from lrkit.optim._dog import DoG, dog_step
from lrkit.optim._kfac import KFACPreconditioner
from lrkit.optim._kfac_optimizer import KFAC
from lrkit.optim._prodigy import Prodigy
from lrkit.optim._registry import REGISTRY, OptimizerSpec, get, make, names

__all__ = [
    "KFAC",
    "REGISTRY",
    "DoG",
    "KFACPreconditioner",
    "OptimizerSpec",
    "Prodigy",
    "dog_step",
    "get",
    "make",
    "names",
]
