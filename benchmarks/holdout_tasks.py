"""Held-out tasks for the finder benchmark: problems that lrkit's rules were not developed on.

`benchmarks/finder.py --holdout` runs the same measurement as on the built-in suite on these
tasks, to check that the default suggestion generalizes. They are written as a user would write
a task, with the public `lrkit.tasks.Task` interface only, and registered under ``holdout-*``
names when this module is imported. Each trains in about a second on one CPU thread.

- ``holdout-cancer``: an MLP with dropout on scikit-learn's breast-cancer data (binary, 569 rows).
- ``holdout-friedman``: an MLP regressor with SiLU on Friedman's #1 function with noise.
- ``holdout-transformer``: a one-layer transformer encoder on the majority-symbol sequences.
- ``holdout-waves``: a 1-D CNN classifying four noisy waveforms (sine, square, triangle, saw).
- ``holdout-deep-mlp``: a plain 8-layer tanh MLP on the digits (no normalization, no skips).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from lrkit.tasks import Task, TaskData, majority_sequences, register

__all__ = ["NAMES"]

SEED = 0


def _splits(x: np.ndarray, y: np.ndarray, *, classify: bool, scale_y: bool = False) -> TaskData:
    """60/20/20 split with a fixed seed, inputs (and optionally targets) standardized on train."""
    strat = y if classify else None
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, random_state=SEED, stratify=strat)
    x_va, x_te, y_va, y_te = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=SEED, stratify=y_rest if classify else None
    )
    if x.dtype.kind == "f":
        mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8
        x_tr, x_va, x_te = ((a - mean) / std for a in (x_tr, x_va, x_te))
    if scale_y:
        mean, std = y_tr.mean(), y_tr.std()
        y_tr, y_va, y_te = ((a - mean) / std for a in (y_tr, y_va, y_te))

    def pair(a: np.ndarray, b: np.ndarray) -> tuple[Tensor, Tensor]:
        xt = torch.as_tensor(a, dtype=torch.float32 if a.dtype.kind == "f" else torch.int64)
        return xt, torch.as_tensor(b, dtype=torch.int64 if classify else torch.float32)

    return TaskData(train=pair(x_tr, y_tr), val=pair(x_va, y_va), test=pair(x_te, y_te))


def _seeded(seed: int, build: type[nn.Module] | functools.partial[nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _waves(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` noisy waveforms of `length` samples, labelled sine, square, triangle or sawtooth."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    t = np.arange(length)[None, :] / length
    freq = rng.uniform(2.0, 6.0, size=(n, 1))
    phase = rng.uniform(0.0, 1.0, size=(n, 1))
    u = (freq * t + phase) % 1.0
    shapes = [np.sin(2 * np.pi * u), np.where(u < 0.5, 1.0, -1.0), 4 * np.abs(u - 0.5) - 1, 2 * u - 1]
    x = np.choose(y[:, None], shapes) * rng.uniform(0.5, 1.5, size=(n, 1))
    x = x + rng.normal(0.0, 0.5, size=x.shape)
    return x[:, None, :], y


@functools.cache
def _cached(which: str) -> TaskData:
    """Each data set once per process (every `Task` instance shares it)."""
    if which == "cancer":
        d = datasets.load_breast_cancer()
        return _splits(d.data, d.target, classify=True)
    if which == "friedman":
        x, y = datasets.make_friedman1(n_samples=1200, n_features=10, noise=1.0, random_state=SEED)
        return _splits(x, y, classify=False, scale_y=True)
    if which == "majority":
        x, y = majority_sequences(3000, length=Transformer.length, symbols=Transformer.symbols, seed=SEED)
        return _splits(x, y, classify=True)
    if which == "waves":
        x, y = _waves(2000, 64, SEED)
        return _splits(x, y, classify=True)
    d = datasets.load_digits()
    return _splits(d.data, d.target, classify=True)


@register
class Cancer(Task):
    name = "holdout-cancer"
    epochs = 20
    batch_size = 32
    description = "MLP with dropout on breast cancer (binary)"

    def data(self) -> TaskData:
        return _cached("cancer")

    def model(self, seed: int) -> nn.Module:
        return _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Linear(30, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
            ),
        )


@register
class Friedman(Task):
    name = "holdout-friedman"
    metric = "rel_mse"
    mode = "min"
    epochs = 20
    batch_size = 32
    description = "MLP regressor on Friedman #1 with noise"

    def data(self) -> TaskData:
        return _cached("friedman")

    def model(self, seed: int) -> nn.Module:
        return _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Linear(10, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1), nn.Flatten(0)
            ),
        )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output, target)

    def score(self, output: Tensor, target: Tensor) -> float:
        return float(nn.functional.mse_loss(output, target) / target.var(unbiased=False))


class _Encoder(nn.Module):
    def __init__(self, symbols: int, length: int, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(symbols, width)
        self.position = nn.Parameter(0.02 * torch.randn(length, width))
        self.layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, symbols)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer(self.embed(x) + self.position).mean(dim=1))


@register
class Transformer(Task):
    name = "holdout-transformer"
    epochs = 6
    batch_size = 64
    description = "one-layer transformer encoder on majority-symbol sequences"
    length, symbols = 24, 8

    def data(self) -> TaskData:
        return _cached("majority")

    def model(self, seed: int) -> nn.Module:
        return _seeded(seed, functools.partial(_Encoder, self.symbols, self.length))


@register
class Waves(Task):
    name = "holdout-waves"
    epochs = 10
    batch_size = 64
    description = "1-D CNN on four noisy waveforms"

    def data(self) -> TaskData:
        return _cached("waves")

    def model(self, seed: int) -> nn.Module:
        return _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Conv1d(1, 16, 7, padding=3),
                nn.ReLU(),
                nn.MaxPool1d(2),
                nn.Conv1d(16, 32, 5, padding=2),
                nn.ReLU(),
                nn.AdaptiveAvgPool1d(1),
                nn.Flatten(),
                nn.Linear(32, 4),
            ),
        )


@register
class DeepMlp(Task):
    name = "holdout-deep-mlp"
    epochs = 10
    batch_size = 32
    description = "plain 8-layer tanh MLP on the digits"

    def data(self) -> TaskData:
        return _cached("digits")

    def model(self, seed: int) -> nn.Module:
        def build() -> nn.Module:
            layers: list[nn.Module] = [nn.Linear(64, 64), nn.Tanh()]
            for _ in range(7):
                layers += [nn.Linear(64, 64), nn.Tanh()]
            return nn.Sequential(*layers, nn.Linear(64, 10))

        return _seeded(seed, build)


NAMES = [Cancer.name, Friedman.name, Transformer.name, Waves.name, DeepMlp.name]
