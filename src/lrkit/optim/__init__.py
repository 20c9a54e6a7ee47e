"""Optimizers: a registry of torch's own under plain names, each with a documented default LR.

>>> from lrkit.optim import get, make, names
>>> names()
['sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam', 'adamw']
>>> import torch
>>> opt = make("momentum", torch.nn.Linear(2, 1).parameters())
>>> opt.defaults["lr"], opt.defaults["momentum"]
(0.001, 0.9)
"""

from lrkit.optim._registry import REGISTRY, OptimizerSpec, get, make, names

__all__ = ["REGISTRY", "OptimizerSpec", "get", "make", "names"]
