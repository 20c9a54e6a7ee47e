"""The built-in tasks: small problems on data shipped with scikit-learn or generated in code.

Each trains in about a second on one CPU thread at its default epochs, and its final metric
depends on the learning rate: too small under-trains, too large diverges or degrades.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lrkit.tasks._base import Task, TaskData, register

__all__ = [
    "CnnDigits",
    "LogregDigits",
    "LstmSequence",
    "MlpDiabetes",
    "MlpDigits",
    "MlpSpirals",
    "majority_sequences",
    "spirals",
]

#: The seed of every data split and generated data set.
DATA_SEED = 0


def _sklearn() -> Any:
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ImportError as e:
        raise ImportError(
            "the built-in tasks need scikit-learn (bundled data sets, splits): pip install 'lrkit[tasks]'"
        ) from e
    return sklearn


def _split(x: np.ndarray, y: np.ndarray, *, stratify: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """A 60/20/20 train/val/test split with a fixed seed (stratified for classification)."""
    split = _sklearn().model_selection.train_test_split
    x_train, x_rest, y_train, y_rest = split(
        x, y, test_size=0.4, random_state=DATA_SEED, stratify=y if stratify else None
    )
    x_val, x_test, y_val, y_test = split(
        x_rest, y_rest, test_size=0.5, random_state=DATA_SEED, stratify=y_rest if stratify else None
    )
    return [(x_train, y_train), (x_val, y_val), (x_test, y_test)]


def _standardize(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Standardize every array with the mean and std of the first (training) one, per feature."""
    mean = parts[0].mean(axis=0)
    std = parts[0].std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return [(p - mean) / std for p in parts]


def _task_data(
    splits: list[tuple[np.ndarray, np.ndarray]], *, regression: bool = False, long_x: bool = False
) -> TaskData:
    """Tensors from NumPy splits: float32 inputs (int64 for token inputs), int64 or float32 targets."""

    def x_tensor(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64 if long_x else np.float32))

    def y_tensor(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32 if regression else np.int64))

    pairs = [(x_tensor(x), y_tensor(y)) for x, y in splits]
    return TaskData(train=pairs[0], val=pairs[1], test=pairs[2])


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build a module with its initial weights drawn from `seed`, leaving torch's global RNG as it was."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"model: `seed` must be an int >= 0, got seed={seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# -- data sets (cached: every task instance shares one copy) -----------------------------------


@functools.cache
def _digits_flat() -> TaskData:
    digits = _sklearn().datasets.load_digits()
    parts = _split(digits.data, digits.target, stratify=True)
    xs = _standardize([x for x, _ in parts])
    return _task_data([(x, y) for x, (_, y) in zip(xs, parts, strict=True)])


@functools.cache
def _digits_images() -> TaskData:
    digits = _sklearn().datasets.load_digits()
    parts = _split(digits.images, digits.target, stratify=True)
    # one mean and std over all pixels of the training images: the images keep their shape
    mean, std = parts[0][0].mean(), parts[0][0].std()
    return _task_data([((x[:, None] - mean) / std, y) for x, y in parts])


@functools.cache
def _diabetes() -> TaskData:
    data = _sklearn().datasets.load_diabetes()
    parts = _split(data.data, data.target.astype(np.float64), stratify=False)
    xs = _standardize([x for x, _ in parts])
    ys = _standardize([y for _, y in parts])
    return _task_data(list(zip(xs, ys, strict=True)), regression=True)


def majority_sequences(n: int, *, length: int, symbols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random sequences of `length` tokens from `symbols` symbols, labelled by their most
    frequent symbol; sequences whose top count is tied are redrawn, so every label is unique."""
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    have = 0
    while have < n:
        x = rng.integers(0, symbols, size=(2 * n, length))
        counts = np.stack([(x == k).sum(axis=1) for k in range(symbols)], axis=1)
        top = np.sort(counts, axis=1)
        keep = x[top[:, -1] > top[:, -2]]
        xs.append(keep)
        have += len(keep)
    x = np.concatenate(xs)[:n]
    y = np.stack([(x == k).sum(axis=1) for k in range(symbols)], axis=1).argmax(axis=1)
    return x, y


@functools.cache
def _majority(n: int, length: int, symbols: int) -> TaskData:
    x, y = majority_sequences(n, length=length, symbols=symbols, seed=DATA_SEED)
    return _task_data(_split(x, y, stratify=True), long_x=True)


def spirals(n: int, *, arms: int, turns: float, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` points on `arms` interleaved spiral arms of `turns` turns each, with Gaussian noise of
    std `noise` (the spirals have radius 1); the label is the arm."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % arms
    t = np.sqrt(rng.uniform(0.0, 1.0, size=n))  # uniform density along the arm's area
    angle = 2 * np.pi * (turns * t + y / arms)
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    x += rng.normal(0.0, noise, size=x.shape)
    return x, y


@functools.cache
def _spirals(n: int, arms: int, turns: float, noise: float) -> TaskData:
    x, y = spirals(n, arms=arms, turns=turns, noise=noise, seed=DATA_SEED)
    parts = _split(x, y, stratify=True)
    xs = _standardize([x for x, _ in parts])
    return _task_data([(x, y) for x, (_, y) in zip(xs, parts, strict=True)])


# -- tasks --------------------------------------------------------------------------------------


@register
class LogregDigits(Task):
    """Multinomial logistic regression (one linear layer) on the 8x8 digits, standardized pixels.

    The convex baseline: 1797 images of 10 classes (scikit-learn's digits), 64 features. The loss
    is cross-entropy plus a small penalty on the squared logits, ``0.01 * mean(logits**2)``: an L2
    penalty measured in the data's metric that keeps the weights bounded. Without it the loss of a
    linear model has bounded gradients, the weights grow without limit, and accuracy hardly depends
    on how large the LR is; with it the problem is strongly convex and, as for least squares, a
    large enough LR oscillates and then diverges.
    """

    name = "logreg-digits"
    metric = "accuracy"
    mode = "max"
    epochs = 10
    batch_size = 32
    description = "logistic regression on scikit-learn's 8x8 digits (convex)"

    #: Weight of the squared-logit penalty.
    logit_penalty = 0.01

    def data(self) -> TaskData:
        return _digits_flat()

    def model(self, seed: int) -> nn.Module:
        return _seeded(seed, lambda: nn.Linear(64, 10))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target) + self.logit_penalty * output.pow(2).mean()


@register
class MlpDigits(Task):
    """An MLP 64-128-128-10 with ReLU on the standardized 8x8 digits."""

    name = "mlp-digits"
    metric = "accuracy"
    mode = "max"
    epochs = 20
    batch_size = 32
    description = "MLP 64-128-128-10 on scikit-learn's 8x8 digits"

    def data(self) -> TaskData:
        return _digits_flat()

    def model(self, seed: int) -> nn.Module:
        return _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
            ),
        )


@register
class CnnDigits(Task):
    """A small CNN with BatchNorm on the 8x8 digit images (inputs of shape ``(N, 1, 8, 8)``).

    conv3x3(8) - BN - ReLU - maxpool2 - conv3x3(16) - BN - ReLU - linear(256, 10).
    """

    name = "cnn-digits"
    metric = "accuracy"
    mode = "max"
    epochs = 10
    batch_size = 32
    description = "small CNN with BatchNorm on scikit-learn's 8x8 digit images"

    def data(self) -> TaskData:
        return _digits_images()

    def model(self, seed: int) -> nn.Module:
        return _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(16 * 4 * 4, 10),
            ),
        )


@register
class MlpDiabetes(Task):
    """An MLP regressor 10-64-64-1 with MSE on scikit-learn's diabetes data (442 patients).

    Inputs and target are standardized with the training split's statistics. The metric is
    ``rel_mse``: the validation MSE divided by the variance of the validation targets (1.0 is
    predicting the mean; the best models reach about 0.5). With 265 training examples it overfits:
    the best LR may be one that under-trains.
    """

    name = "mlp-diabetes"
    metric = "rel_mse"
    mode = "min"
    epochs = 60
    batch_size = 32
    description = "MLP regressor on scikit-learn's diabetes data (small data, overfits)"

    def data(self) -> TaskData:
        return _diabetes()

    def model(self, seed: int) -> nn.Module:
        return _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1), nn.Flatten(0)
            ),
        )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output, target)

    def score(self, output: Tensor, target: Tensor) -> float:
        return float(nn.functional.mse_loss(output, target) / target.var(unbiased=False))


class _LastStepLSTM(nn.Module):
    """Embedding - LSTM - linear on the last hidden state."""

    def __init__(self, symbols: int, embed: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(symbols, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        _, (h, _) = self.lstm(self.embed(x))
        out: Tensor = self.head(h[-1])
        return out


@register
class LstmSequence(Task):
    """An LSTM that reads a sequence of 20 symbols out of 10 and names the most frequent one.

    3000 sequences generated with a fixed seed (ties for the top count are redrawn, so the winner
    is often ahead by a single occurrence); chance is 0.1. The LSTM (embedding 16, hidden 32, a
    linear head on the last state) has to count, which it learns to about 0.95 in a few hundred
    steps at a good LR.
    """

    name = "lstm-sequence"
    metric = "accuracy"
    mode = "max"
    epochs = 15
    batch_size = 64
    description = "LSTM naming the most frequent of 10 symbols in generated length-20 sequences"

    symbols = 10
    length = 20
    size = 3000

    def data(self) -> TaskData:
        return _majority(self.size, self.length, self.symbols)

    def model(self, seed: int) -> nn.Module:
        return _seeded(seed, lambda: _LastStepLSTM(self.symbols, 16, 32, self.symbols))


@register
class MlpSpirals(Task):
    """An MLP 2-64-64-3 with ReLU on three interleaved noisy spiral arms (generated).

    Non-convex and LR-sensitive: the arms are separated only by a curved boundary that a slow
    optimizer does not find in the default epochs.
    """

    name = "mlp-spirals"
    metric = "accuracy"
    mode = "max"
    epochs = 30
    batch_size = 32
    description = "MLP on three generated interleaved spiral arms (non-convex)"

    arms = 3
    size = 1500

    def data(self) -> TaskData:
        return _spirals(self.size, self.arms, 1.25, 0.04)

    def model(self, seed: int) -> nn.Module:
        return _seeded(
            seed,
            lambda: nn.Sequential(
                nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, self.arms)
            ),
        )
