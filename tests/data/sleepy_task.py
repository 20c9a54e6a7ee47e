"""A tiny regression task whose training steps wait on the clock, not the CPU.

The distributed tuning tests need trials that last long enough to kill a worker in the middle of
one, without loading the two cores the tests share: every training step sleeps `STEP_SECONDS`.
"""

from __future__ import annotations

import time

import torch

from lrkit.tasks import Task, TaskData

STEP_SECONDS = 0.05


class SleepyTask(Task):
    name = "sleepy"
    metric = "rel_mse"
    mode = "min"
    epochs = 3
    batch_size = 16

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(96, 4, generator=g)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(96, generator=g)
        self._data = TaskData(train=(x[:48], y[:48]), val=(x[48:72], y[48:72]), test=(x[72:], y[72:]))

    def data(self) -> TaskData:
        return self._data

    def model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0))

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.requires_grad:  # a training step, not an evaluation
            time.sleep(STEP_SECONDS)
        return torch.nn.functional.mse_loss(output, target)

    def score(self, output: torch.Tensor, target: torch.Tensor) -> float:
        return float(torch.mean((output - target) ** 2) / torch.var(target))


task = SleepyTask()
