"""ScheduleLR where torch's schedulers are used: Lightning and the Hugging Face Trainer (real ones)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrkit.adapters.torch import ScheduleLR
from lrkit.schedules import parse

SPEC = "warmup(5) >> cosine(0.05, steps=25, end=0.001)"
STEPS = 24


def _data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])


def test_lightning_configure_optimizers(tmp_path: Path) -> None:
    import lightning

    logging.getLogger("lightning").setLevel(logging.ERROR)
    seen: list[tuple[float, float]] = []

    class Module(lightning.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            opt = self.optimizers().optimizer
            seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            sched = ScheduleLR(opt, "onecycle(0.05, steps=24)")
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = lightning.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Module(), loader)
    s = parse("onecycle(0.05, steps=24)")
    np.testing.assert_array_equal([lr for lr, _ in seen], s(np.arange(STEPS)))
    np.testing.assert_array_equal([m for _, m in seen], s.momentum(np.arange(STEPS)))


def test_hugging_face_trainer(tmp_path: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": torch.nn.functional.mse_loss(self.net(x), labels)}

    x, y = _data()
    rows = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    sched = ScheduleLR(opt, SPEC)
    seen: list[float] = []

    class Record(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            seen.append(opt.param_groups[0]["lr"])

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=rows, optimizers=(opt, sched), callbacks=[Record()]
    )
    trainer.train()
    # with gradient accumulation the schedule advances once per optimizer step
    np.testing.assert_array_equal(seen, parse(SPEC)(np.arange(STEPS)))
    assert sched.last_epoch == STEPS
