"""The accelerator paths, on a CUDA device: the finder restores everything bit for bit and keeps
its snapshot off the GPU, also when interrupted, AMP with a GradScaler, verification with the
candidates trained together, clipped, training with AMP and a bit-exact resume, every
registered optimizer, and tensor LRs on the device.

Skipped where no CUDA device is present. ``LRKIT_TEST_DEVICE`` names another device to run them
on (the memory checks are CUDA's alone).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from lrkit import find_lr
from lrkit.adapters.torch import ScheduleLR
from lrkit.cli import app
from lrkit.finder import FinderResult
from lrkit.optim import names as optimizer_names
from lrkit.schedules import onecycle
from lrkit.tasks import get
from lrkit.train import History, fit, load_checkpoint

DEVICE = os.environ.get("LRKIT_TEST_DEVICE", "cuda")
CUDA = torch.device(DEVICE).type == "cuda"
pytestmark = pytest.mark.skipif(CUDA and not torch.cuda.is_available(), reason="needs a CUDA device")


def _data(n: int = 1024, d: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, (x @ torch.randn(d, 10, generator=g)).argmax(1)


def _batches(seed: int = 0, bs: int = 64, n: int = 1024) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches on the CPU: the finder moves them to the model's device."""
    x, y = _data(n, seed=seed)
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, n, bs)]


def _net(width: int = 1024, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Dropout(0.1),  # draws from the device's RNG
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, 10),
    ).to(DEVICE, dtype)


def _warm(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Optimizer state, moved BatchNorm statistics, and gradients left behind."""
    for x, y in _batches()[:3]:
        opt.zero_grad()
        F.cross_entropy(model(x.to(DEVICE)), y.to(DEVICE)).backward()
        opt.step()
    x, y = _batches()[3]
    F.cross_entropy(model(x.to(DEVICE)), y.to(DEVICE)).backward()


def _state(model: nn.Module, opt: torch.optim.Optimizer, scaler: Any = None) -> dict[str, Any]:
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in copy.deepcopy(opt.param_groups)],
        "opt": {i: {k: v.clone() for k, v in s.items()} for i, s in opt.state_dict()["state"].items()},
        "scaler": None if scaler is None else scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if CUDA else None,
        "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
    }


def _assert_same(a: Any, b: Any, where: str = "state") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.device == b.device and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _peak_bytes(fn: Any) -> int:
    """The most memory `fn` held on the device at once beyond what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _train_steps(model: nn.Module, opt: torch.optim.Optimizer, k: int = 3) -> None:
    for x, y in _batches()[:k]:
        opt.zero_grad()
        F.cross_entropy(model(x.to(DEVICE)), y.to(DEVICE)).backward()
        opt.step()


@pytest.mark.parametrize("verify", ["off", "one after the other"])
def test_finder_restores_everything_bitwise_and_keeps_no_copy_on_the_device(verify: str) -> None:
    model = _net()
    # capturable Adam with a tensor LR on the device: its `step` counts live on the device too
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3, device=DEVICE), capturable=CUDA)
    _warm(model, opt)
    model.eval()
    model[0].train()  # a mixed train/eval state must come back as it was
    lr_tensor = opt.param_groups[0]["lr"]
    before = _state(model, opt)
    kwargs: dict[str, Any] = {"seeds": 2}
    if verify != "off":
        kwargs.update(val_loader=_batches(seed=1, n=256), vectorize=False, train_steps=200)

    def run() -> None:
        r = find_lr(model, opt, F.cross_entropy, _batches(), steps=60, **kwargs)
        assert r.status in ("ok", "diverged") and math.isfinite(r.suggestion)
        assert (r.verification is not None) is (verify != "off")

    if not CUDA:
        run()
        _assert_same(_state(model, opt), before)
        return
    extra = _peak_bytes(run)
    _assert_same(_state(model, opt), before)
    assert opt.param_groups[0]["lr"] is lr_tensor
    # the same model trained for a few steps, as a yardstick of what training itself holds
    model.train()
    train = _peak_bytes(lambda: _train_steps(model, opt))
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # a second copy of the weights alone would add param_bytes; of the Adam state, twice that
    assert extra <= train + param_bytes // 4, (extra, train, param_bytes)


def test_amp_with_a_grad_scaler_skips_overflowing_steps_and_restores_the_scaler() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    # a scale this large overflows float16 gradients: the first steps are skipped, then it backs off
    scaler = torch.amp.GradScaler(torch.device(DEVICE).type, init_scale=2.0**24)
    before = _state(model, opt, scaler)
    calls = 0

    def step_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        x, y = batch
        return F.cross_entropy(m(x.to(DEVICE)), y.to(DEVICE))

    r = find_lr(model, opt, None, _batches(), step_fn=step_fn, scaler=scaler, amp=True, steps=60)
    assert math.isfinite(r.suggestion)
    assert calls - len(r.lrs) >= 3  # skipped steps (2^24 -> 2^21 at least) did not advance it
    assert r.lrs == sorted(set(r.lrs))  # no LR recorded twice
    _assert_same(_state(model, opt, scaler), before)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bfloat16_autocast_without_a_scaler() -> None:
    model = _net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = _state(model, opt)
    r = find_lr(model, opt, F.cross_entropy, _batches(), amp=torch.bfloat16, steps=60)
    assert r.status in ("ok", "diverged") and math.isfinite(r.suggestion)
    _assert_same(_state(model, opt), before)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.Adam(p, lr=1e-3),
        lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01),
    ],
)
def test_candidates_trained_together_score_as_one_after_the_other(make_opt: Any) -> None:
    """In float64 (a batched matrix product sums in another order than a plain one, and 40
    steps of training amplify float32 rounding) with BatchNorm statistics per candidate."""
    val = _batches(seed=1, n=256)
    train = [(x.double(), y) for x, y in _batches()]
    val = [(x.double(), y) for x, y in val]
    out = {}
    for vectorize in (True, False):
        model = _net(width=128, dtype=torch.float64)
        model[3].p = 0.0  # dropout draws differently when vectorized
        opt = make_opt(model.parameters())
        out[vectorize] = find_lr(
            model, opt, F.cross_entropy, train, val_loader=val, train_steps=200, vectorize=vectorize, steps=60
        )
    on, off = out[True].verification, out[False].verification
    assert on is not None and off is not None and on.vectorized and not off.vectorized
    assert out[True].lrs == out[False].lrs and on.candidates == off.candidates
    np.testing.assert_allclose(on.scores, off.scores, rtol=1e-6)
    assert on.chosen == off.chosen


@pytest.mark.parametrize("buffered", [False, True])
@pytest.mark.parametrize(
    "kind", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad]
)
def test_the_stacked_step_is_torchs_on_the_device_bit_for_bit(
    kind: Any, buffered: bool, check_stacked_step: Any
) -> None:
    """Given the same gradients, each candidate's slice of the stacked parameters takes exactly
    the step of torch's single-tensor optimizer on this device, with the square roots made each
    step (the accelerators' choice) or kept in a buffer (the CPU's). (torch's own multi-tensor
    and fused Adam differ from its single-tensor one, and from each other, in the last bit on
    CUDA: measured on an H200.)"""

    def make(params: Any, lr: float) -> torch.optim.Optimizer:
        extra = {"momentum": 0.9} if kind is torch.optim.SGD else {}
        return kind(params, lr=lr, weight_decay=0.01, foreach=False, **extra)

    check_stacked_step(make, shapes=[(64, 32), (32,)], device=DEVICE, buffered=buffered)


@pytest.mark.parametrize(
    ("where", "vectorize"), [("sweep", False), ("verification", False), ("verification", True)]
)
def test_an_interrupt_on_the_device_puts_everything_back_bit_for_bit(where: str, vectorize: bool) -> None:
    """Interrupted during the sweep, or while training the candidates one after the other or
    together, the model, the optimizer (a capturable Adam's device-side counts), the gradients
    and the CUDA RNG come back as they were, with no copy left on the device."""
    model = _net(width=256)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3, device=DEVICE), capturable=CUDA)
    _warm(model, opt)
    before = _state(model, opt)
    allocated = torch.cuda.memory_allocated() if CUDA else 0
    calls = 0
    stop_at = 20 if where == "sweep" else 60 + 30  # the sweep takes 60 steps

    def step_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == stop_at:
            raise KeyboardInterrupt
        x, y = batch  # a step function moves its own batches
        return F.cross_entropy(m(x.to(DEVICE)), y.to(DEVICE))

    with pytest.raises(KeyboardInterrupt):
        find_lr(
            model, opt, None, _batches(), step_fn=step_fn, steps=60, val_loader=_batches(seed=1, n=256),
            train_steps=200, vectorize=vectorize,
        )  # fmt: skip
    assert calls == stop_at
    _assert_same(_state(model, opt), before)
    if CUDA:
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() == allocated


@pytest.mark.parametrize("vectorize", [True, False])
def test_clipped_candidates_on_the_device_score_as_on_the_cpu(vectorize: bool) -> None:
    """Gradient clipping binds (inputs of scale 10), each candidate on its own gradient's norm;
    in float64 the device's verification scores are the CPU's where training is not chaotic (on an
    H200 the largest of the four candidates' score differed by 10 to 17%, the others by < 1e-6
    relative)."""
    g = torch.Generator().manual_seed(3)
    x = 10 * torch.randn(512, 8, generator=g, dtype=torch.float64)
    y = x @ torch.randn(8, 1, generator=g, dtype=torch.float64)
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]
    scores = {}
    for device in (DEVICE, "cpu"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).double().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        r = find_lr(
            model, opt, F.mse_loss, train, val_loader=train[:4], train_steps=160, candidates=4,
            clip_grad_norm=0.5, vectorize=vectorize, steps=40,
        )  # fmt: skip
        assert r.verification is not None and r.verification.vectorized is vectorize
        scores[device] = r.verification
    assert scores[DEVICE].candidates == scores["cpu"].candidates
    np.testing.assert_allclose(scores[DEVICE].scores[:3], scores["cpu"].scores[:3], rtol=1e-5)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_transformer_candidates_train_together_on_the_device(dropout: float) -> None:
    """Attention with and without dropout (which the fused CUDA kernels cannot draw once for a
    batch of candidates, so verification takes the math backend) trains vectorized; without
    dropout, in float64, it scores as one after the other where training is not chaotic (on an
    H200 the largest candidate's score differed by 2e-4 relative, the two smallest by < 1e-6)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=dropout, batch_first=True)
    out = {}
    for vectorize in (True, False):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Unflatten(1, (8, 8)), nn.Linear(8, 32), copy.deepcopy(layer), nn.Flatten(), nn.Linear(256, 10)
        )
        model = model.double().to(DEVICE)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        train = [(x.double(), y) for x, y in _batches()]
        val = [(x.double(), y) for x, y in _batches(seed=1, n=256)]
        out[vectorize] = find_lr(
            model, opt, F.cross_entropy, train, val_loader=val, train_steps=100, vectorize=vectorize, steps=40
        )
    on, off = out[True].verification, out[False].verification
    assert on is not None and off is not None and on.vectorized and not off.vectorized
    assert torch.backends.mha.get_fastpath_enabled()
    if dropout == 0.0:  # the two smallest candidates: the larger ones train chaotically here
        assert on.candidates == off.candidates and on.chosen == off.chosen
        np.testing.assert_allclose(on.scores[:2], off.scores[:2], rtol=1e-6)


def _interrupt_at(epoch: int) -> Any:
    def check(h: History) -> None:
        if len(h.epochs) == epoch:
            raise KeyboardInterrupt

    return check


@pytest.mark.parametrize("amp", [False, True])
def test_training_learns_and_resumes_bit_for_bit(amp: bool, tmp_path: Path) -> None:
    task = get("mlp-digits")
    full_model = task.model(0)
    full = fit(task, "adam", "onecycle", 4, lr=3e-3, model=full_model, device=DEVICE, amp=amp)
    assert full.status == "completed" and full.final_metric > 0.9
    assert next(full_model.parameters()).device.type == torch.device(DEVICE).type
    with pytest.raises(KeyboardInterrupt):
        fit(task, "adam", "onecycle", 4, lr=3e-3, device=DEVICE, amp=amp, checkpoint_dir=tmp_path,
            on_epoch=_interrupt_at(2))  # fmt: skip
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    resumed_model = task.model(0)
    resumed = fit(
        task, "adam", "onecycle", 4, lr=3e-3, model=resumed_model, device=DEVICE, amp=amp,
        checkpoint_dir=tmp_path, resume=True,
    )  # fmt: skip
    assert resumed.losses == full.losses and resumed.lrs == full.lrs
    assert resumed.final_metric == full.final_metric
    _assert_same(resumed_model.state_dict(), full_model.state_dict(), "weights")


@pytest.mark.parametrize("name", optimizer_names())
def test_every_registered_optimizer_trains_on_the_device_as_on_the_cpu(name: str) -> None:
    task = get("mlp-digits")
    on_device = fit(task, name, "constant", device=DEVICE)
    on_cpu = fit(task, name, "constant", device="cpu")
    assert on_device.status == "completed" and on_device.final_metric > 0.8, (name, on_device.final_metric)
    assert abs(on_device.final_metric - on_cpu.final_metric) <= 0.03, (
        on_device.final_metric,
        on_cpu.final_metric,
    )


@pytest.mark.parametrize("flavour", ["capturable", "fused"])
def test_a_tensor_lr_on_the_device_is_updated_in_place(flavour: str) -> None:
    if flavour == "capturable" and not CUDA:
        pytest.skip("capturable optimizers need an accelerator")
    torch.manual_seed(0)
    model = nn.Linear(16, 1).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01, device=DEVICE), **{flavour: True})
    lr_tensor = opt.param_groups[0]["lr"]
    sched = ScheduleLR(opt, onecycle(0.01, steps=100))
    x, y = torch.randn(64, 16, device=DEVICE), torch.randn(64, 1, device=DEVICE)
    lrs = []
    for _ in range(60):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        sched.step()
        lrs.append(float(opt.param_groups[0]["lr"]))
    assert opt.param_groups[0]["lr"] is lr_tensor and lr_tensor.device.type == torch.device(DEVICE).type
    np.testing.assert_allclose(lrs, onecycle(0.01, steps=100)(np.arange(1, 61)), rtol=1e-6)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_command_line_finds_and_trains_on_the_device(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        app, ["find", "--task", "mlp-digits", "--optimizer", "adam", "--device", DEVICE, "--amp", "--verify"]
        + ["-o", str(tmp_path / "find")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    found = FinderResult.from_dict(json.loads((tmp_path / "find" / "lr_find.json").read_text()))
    assert found.verification is not None and 1e-5 < found.suggestion < 1.0
    res = runner.invoke(
        app, ["train", "--task", "mlp-digits", "--lr", f"{found.suggestion}", "--device", DEVICE, "--amp"]
        + ["-o", str(tmp_path / "train")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    h = History.from_dict(json.loads((tmp_path / "train" / "history.json").read_text()))
    assert h.status == "completed" and h.final_metric > 0.9
