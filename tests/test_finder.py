"""The LR range test: suggestions, divergence, restoring everything, odd batches, bad input."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrkit import find_lr
from lrkit.finder import FLAT_DECADES, RULES, DivergenceMonitor, FinderResult, divergence_cap, smooth
from lrkit.schedules import Cyclic, OneCycle, constant


def _data(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 3, generator=g)
    return x, (x @ w).argmax(1)


def _batches(bs: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = _data()
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)]


def _val() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Four validation batches of 64, drawn apart from the training data."""
    x, y = _data(seed=1)
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]


def _model(seed: int = 0, bn: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(8, 32)]
    if bn:
        layers.append(torch.nn.BatchNorm1d(32))
    layers += [torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 3)]
    return torch.nn.Sequential(*layers)


def _state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Any:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [m.training for m in model.modules()],
        json.dumps(
            {k: v for k, v in opt.state_dict()["param_groups"][0].items() if k != "params"}, default=float
        ),
        {i: {k: v.clone() for k, v in s.items()} for i, s in opt.state_dict()["state"].items()},
        torch.get_rng_state().clone(),
        np.random.get_state()[1].copy(),
        random.getstate(),
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _warm(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    """Give the optimizer state (momentum buffers, Adam moments) and leave gradients behind."""
    for x, y in _batches()[:3]:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    F.cross_entropy(model(_batches()[0][0]), _batches()[0][1]).backward()


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01),
        lambda p: torch.optim.Adam(p, lr=torch.tensor(1e-3)),
    ],
)
@pytest.mark.parametrize("snapshot", ["cpu", "disk"])
def test_everything_is_restored_bitwise(make_opt: Any, snapshot: str, tmp_path: Path) -> None:
    model = _model(bn=True)
    opt = make_opt(model.parameters())
    _warm(model, opt)
    model.eval()
    model[0].train()  # a mixed train/eval state must come back as it was
    lr_obj = opt.param_groups[0]["lr"]
    before = _state(model, opt)
    result = find_lr(model, opt, F.cross_entropy, _batches(), snapshot=snapshot, snapshot_dir=tmp_path)
    assert result.status in ("ok", "diverged")
    assert _same(_state(model, opt), before)
    if isinstance(lr_obj, torch.Tensor):
        assert opt.param_groups[0]["lr"] is lr_obj  # a tensor LR keeps its identity
    assert list(tmp_path.iterdir()) == []  # the snapshot file is gone


def test_tensor_lrs_shared_by_groups_and_the_default_come_back_as_the_same_objects() -> None:
    """torch gives groups without an LR of their own the optimizer's default tensor; the sweep's
    scheduler gives each group its own, and the result puts the user's objects back."""
    model = _model()
    opt = torch.optim.Adam(
        [{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=torch.tensor(1e-3)
    )
    lr_obj = opt.defaults["lr"]
    assert all(g["lr"] is lr_obj for g in opt.param_groups)
    before = _state(model, opt)
    find_lr(model, opt, F.cross_entropy, _batches(), val_loader=_batches()[:4], train_steps=300)
    assert _same(_state(model, opt), before)
    assert opt.defaults["lr"] is lr_obj and all(g["lr"] is lr_obj for g in opt.param_groups)
    assert torch.equal(lr_obj, torch.tensor(1e-3))


@pytest.mark.parametrize("vectorize", [True, False])
def test_restored_bitwise_with_torch_dataloaders(vectorize: bool) -> None:
    """A DataLoader draws from torch's RNG each time it is iterated (its workers' seed), the
    validation loader's included: every draw happens inside the snapshot."""
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data()
    vx, vy = _data(seed=1)
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(vx[:256], vy[:256]), batch_size=64)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _warm(model, opt)
    before = _state(model, opt)
    result = find_lr(model, opt, F.cross_entropy, train, val_loader=val, train_steps=500, vectorize=vectorize)
    assert result.verification is not None and result.verification.vectorized is vectorize
    assert _same(_state(model, opt), before)


@pytest.mark.parametrize("snapshot", ["cpu", "disk"])
def test_a_parameter_the_optimizer_trains_outside_the_model_comes_back(snapshot: str, tmp_path: Path) -> None:
    """A loss with a learnable temperature: the optimizer trains it with the model, so the sweep
    and every verified candidate move it; it comes back, its gradient too, and each candidate
    starts from its value (scored the same as when it is a part of the model)."""
    scores = []
    for inside in (False, True):
        model = _model()
        temperature = torch.nn.Parameter(torch.tensor(1.0))
        if inside:
            model.register_parameter("temperature", temperature)
        params = [p for p in model.parameters() if p is not temperature] + [temperature]
        opt = torch.optim.Adam(params, lr=1e-3)
        temperature.grad = torch.tensor(0.25)

        def loss(out: torch.Tensor, y: torch.Tensor, t: torch.Tensor = temperature) -> torch.Tensor:
            return F.cross_entropy(out * t, y)

        result = find_lr(
            model, opt, loss, _batches(), val_loader=_val(), train_steps=200, snapshot=snapshot,
            snapshot_dir=tmp_path, vectorize=False,
        )  # fmt: skip
        assert temperature.item() == 1.0 and temperature.grad is not None and temperature.grad.item() == 0.25
        assert result.verification is not None
        scores.append(result.verification.scores)
    assert scores[0] == scores[1]


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_restored_when_the_run_raises_or_is_interrupted(error: type[BaseException]) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _warm(model, opt)
    before = _state(model, opt)
    calls = 0

    def step_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 30:
            raise error()
        return F.cross_entropy(m(batch[0]), batch[1])

    with pytest.raises(error):
        find_lr(model, opt, None, _batches(), step_fn=step_fn)
    assert _same(_state(model, opt), before)


def test_attached_scheduler_is_restored() -> None:
    from lrkit.adapters.torch import ScheduleLR

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = ScheduleLR(opt, "cosine(0.1, steps=100)")
    for _ in range(7):
        opt.step()
        sched.step()
    before = sched.state_dict()
    find_lr(model, opt, F.cross_entropy, _batches(), scheduler=sched)
    assert sched.state_dict() == before
    assert opt.param_groups[0]["lr"] == pytest.approx(sched.schedule(7))


@pytest.mark.parametrize(
    "make_sched",
    [
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100),
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
        lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step)),
    ],
)
def test_a_torch_scheduler_attached_to_the_optimizer_is_restored(make_sched: Any) -> None:
    """torch's schedulers wrap the optimizer's step() (the range test still runs: it is not a
    step that needs a closure), cycle momentum (OneCycleLR), and carry on as before afterwards."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = make_sched(opt)
    for _ in range(5):
        opt.step()
        sched.step()
    before = (copy.deepcopy(sched.state_dict()), _state(model, opt))
    result = find_lr(
        model, opt, F.cross_entropy, _batches(), val_loader=_val(), train_steps=500, scheduler=sched
    )
    assert result.verification is not None
    assert sched.state_dict() == before[0] and _same(_state(model, opt), before[1])
    opt.step()
    sched.step()
    assert sched.state_dict()["last_epoch"] == 6


def test_a_result_prints_what_the_test_found_in_a_line_or_two() -> None:
    """Not the curve's hundred floats: they stay in lrs, losses and smoothed."""
    model = _model()
    r = find_lr(model, torch.optim.Adam(model.parameters()), F.cross_entropy, _batches(), val_loader=_val())
    text = repr(r)
    assert text.startswith(f"FinderResult(target='constant', suggestion={r.suggestion:.3g}, status=")
    assert "verification=Verification(on='validation loss', candidates=[" in text and len(text) < 600
    assert r.verification is not None and f"chosen={r.verification.chosen:.3g}" in text


def test_suggestions_are_sane_on_a_learnable_problem() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    r = find_lr(model, opt, F.cross_entropy, _batches())
    assert r.status == "diverged"
    assert set(r.suggestions) == set(RULES)
    lo, hi = r.interval
    assert 1e-5 < lo < hi < 10
    assert lo / 10 <= r.suggestion <= hi
    assert r.suggestions["lrkit-peak"] > r.suggestion  # a one-cycle peak may be higher
    assert r.suggestions["minimum/10"] == pytest.approx(r.suggestions["minimum"] / 10)
    assert len(r.lrs) == len(r.losses) == len(r.smoothed) == r.stopped_at + 1
    assert np.all(np.diff(r.lrs) > 0)
    peak = find_lr(model, opt, F.cross_entropy, _batches(), target="onecycle")
    assert peak.suggestion == pytest.approx(peak.suggestions["lrkit-peak"])
    assert isinstance(peak.schedule(steps=1000), OneCycle)
    assert r.schedule().lr == r.suggestion  # constant
    assert isinstance(r.schedule("cyclic", steps=800), Cyclic)
    for bad in (-5, 0, 2.5, True):
        with pytest.raises(ValueError, match=rf"`steps` must be an integer >= 1 .*got steps={bad}"):
            r.schedule("cyclic", steps=bad)
    with pytest.raises(ValueError, match="needs `steps`"):
        r.schedule("onecycle")


def test_linear_sweep() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    r = find_lr(model, opt, F.cross_entropy, _batches(), start_lr=1e-4, end_lr=0.5, mode="linear")
    assert np.allclose(np.diff(r.lrs), np.diff(r.lrs)[0])


def test_json_round_trip(tmp_path: Path) -> None:
    model = _model()
    r = find_lr(model, torch.optim.Adam(model.parameters()), F.cross_entropy, _batches(), seeds=2)
    path = tmp_path / "r.json"
    r.to_json(path)
    data = json.loads(path.read_text())
    assert data["format"] == "lrkit.FinderResult/1"
    again = FinderResult.from_dict(data)
    assert again.suggestion == r.suggestion and again.lrs == r.lrs and again.seeds == r.seeds
    # the repeated sweep's curve is kept (the same LR sequence, as far as it went) and drawn
    assert list(r.repeats) == [1] and again.repeats == r.repeats
    lrs, sm = r.repeats[1]["lrs"], r.repeats[1]["smoothed"]
    n = min(len(lrs), len(r.lrs))
    assert len(sm) == len(lrs) and lrs[:n] == r.lrs[:n] and sm[:n] != r.smoothed[:n]
    fig = r.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.axes[0].get_xscale() == "log"
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "smoothed, seed 1" in labels and "smoothed, seed 0" in labels
    one = find_lr(model, torch.optim.Adam(model.parameters()), F.cross_entropy, _batches())
    assert one.repeats == {} and "smoothed" in [
        t.get_text() for t in one.plot().axes[0].get_legend().get_texts()
    ]


def test_the_plot_of_a_verified_result_shows_the_candidates_below_the_curve(tmp_path: Path) -> None:
    from lrkit.finder import Verification

    lrs = list(np.geomspace(1e-6, 1.0, 60))
    losses = [2.0 - 1.5 / (1.0 + (1e-3 / lr) ** 2) for lr in lrs]
    # five candidates: the fourth tied with the best (within its standard error), the largest
    # diverged (inf), the best is the third
    ver = Verification(
        candidates=[1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1],
        scores=[0.9, 0.6, 0.5, 0.52, math.inf],
        on="validation loss",
        chosen=1e-2 * math.sqrt(0.2),
        steps=40,
        total_steps=200,
        seconds=0.1,
        vectorized=True,
        best=1e-2,
        horizon_factor=math.sqrt(0.2),
        errors=[0.05, 0.04, 0.0, 0.03, math.nan],
    )
    r = FinderResult(lrs, losses, list(smooth(losses)), ver.chosen, {}, (1e-4, 1e-2), "constant", "ok")
    r.verification = ver
    for result in (r, FinderResult.from_dict(json.loads(r.to_json()))):
        assert result.verification is not None  # and JSON's nulls read back as inf and NaN:
        assert math.isinf(result.verification.scores[-1]) and math.isnan(result.verification.errors[-1])
        fig = result.plot(tmp_path / "v.png")
        curve, below = fig.axes
        assert below.get_xscale() == "log" and below.get_ylabel() == "validation loss"
        assert curve.get_xlim() == below.get_xlim()  # one LR axis for both
        labels = [t.get_text() for t in below.get_legend().get_texts()]
        assert "diverged" in labels and "taken: 0.01" in labels
        assert "suggestion: 0.01 x 0.45 = 0.0045" in labels
        (bars,) = below.containers  # the four candidates whose runs ended, with their errors
        assert len(bars.lines[0].get_xdata()) == 4
    assert (tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ver.scores = [math.inf] * 5  # every candidate diverged: still a picture
    ver.best = math.nan
    assert len(r.plot().axes) == 2


def test_the_plot_of_a_flat_curve_shows_its_noise_as_noise() -> None:
    rng = np.random.default_rng(0)
    lrs = list(np.geomspace(1e-7, 1.0, 60))
    losses = list(2.3 + 0.02 * rng.standard_normal(60))
    sm = smooth(losses)
    r = FinderResult(lrs, losses, list(sm), math.nan, {}, (math.nan, math.nan), "constant", "flat")
    low, high = r.plot().axes[0].get_ylim()
    # the range is set by the raw loss's noise, not by the smoothed curve's ripples
    inside = np.mean([(low <= v <= high) for v in losses])
    assert inside >= 0.9


def test_seeds_report_spread_and_agree_roughly() -> None:
    model = _model()
    r = find_lr(
        model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), F.cross_entropy, _batches(), seeds=3
    )
    assert len(r.seeds) == 3
    vals = list(r.seeds.values())
    assert r.spread == pytest.approx(math.log10(max(vals) / min(vals)))
    assert r.spread < 0.5
    assert min(vals) * (1 - 1e-9) <= r.suggestion <= max(vals) * (1 + 1e-9)
    assert r.steps >= 3 * 50


def test_step_fn_for_dict_batches_and_multi_input_models() -> None:
    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)

        def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return self.a(left) + self.b(right)

    x, y = _data()
    dict_batches = [
        {"left": x[i : i + 32, :4], "right": x[i : i + 32, 4:], "label": y[i : i + 32]}
        for i in range(0, 512, 32)
    ]
    model = TwoInputs()
    r = find_lr(
        model,
        torch.optim.Adam(model.parameters()),
        None,
        dict_batches,
        step_fn=lambda m, b: F.cross_entropy(m(b["left"], b["right"]), b["label"]),
    )
    assert math.isfinite(r.suggestion)
    tuple_batches = [((b["left"], b["right"]), b["label"]) for b in dict_batches]  # model(*inputs)
    r2 = find_lr(model, torch.optim.Adam(model.parameters()), F.cross_entropy, tuple_batches)
    assert math.isfinite(r2.suggestion)


def test_gradient_accumulation_counts_optimizer_steps() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = 0

    def step_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        nonlocal seen
        seen += 1
        return F.cross_entropy(m(batch[0]), batch[1])

    with pytest.warns(UserWarning) as caught:  # 1e-3 is too small an end for this model
        r = find_lr(model, opt, None, _batches(), step_fn=step_fn, accumulation=4, steps=40, end_lr=1e-3)
    assert any("neither fell nor diverged" in str(w.message) for w in caught)
    assert len(r.lrs) == 40 and r.steps == 40 and seen == 160
    assert r.lrs[-1] == pytest.approx(1e-3)


def test_steps_skipped_by_grad_scaler_do_not_advance_the_sweep() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4, growth_interval=3)
    scaler_before = scaler.state_dict()
    calls = 0

    def step_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        loss = F.cross_entropy(m(batch[0]), batch[1])
        return loss * float("inf") if calls % 10 == 3 else loss  # inf gradients: step skipped

    with pytest.warns(UserWarning):  # the curve is flat up to 1e-3: the rules disagree
        r = find_lr(model, opt, None, _batches(), step_fn=step_fn, scaler=scaler, steps=40, end_lr=1e-3)
    assert len(r.lrs) == 40 and calls == 45  # 5 of them skipped
    assert r.lrs == sorted(set(r.lrs))  # no LR recorded twice, none skipped
    assert scaler.state_dict() == scaler_before  # its scale went up and down, and is back
    with torch.no_grad():
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_amp_autocast_runs() -> None:
    model = _model()
    r = find_lr(model, torch.optim.Adam(model.parameters()), F.cross_entropy, _batches(), amp=True)
    assert math.isfinite(r.suggestion)
    assert next(model.parameters()).dtype == torch.float32


def test_nan_from_the_first_step_is_a_result_not_a_crash() -> None:
    model = _model()
    with pytest.warns(UserWarning, match="not finite from the first step"):
        r = find_lr(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            None,
            _batches(),
            step_fn=lambda m, b: (m(b[0]) * float("nan")).sum(),
        )
    assert r.status == "nan-at-start" and math.isnan(r.suggestion)
    assert math.isnan(json.loads(r.to_json())["suggestion"] or math.nan)
    with pytest.raises(ValueError, match="no usable LR"):
        r.schedule()


def _plateau_step(opt: torch.optim.Optimizer, edge: float | None) -> Any:
    """A loss that never falls (a deep net on its plateau, at ln(10)) and explodes once the LR
    passes `edge` (never when None)."""

    def step(m: torch.nn.Module, b: Any) -> torch.Tensor:
        lr = opt.param_groups[0]["lr"]
        level = 2.3
        if edge is not None and lr > edge:
            level *= (lr / edge) ** 3
        return m(b[0]).sum() * 0.0 + level

    return step


def test_a_flat_sweep_that_diverges_is_read_below_the_divergence() -> None:
    readings = {}
    for target in ("constant", "onecycle"):
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with pytest.warns(UserWarning, match="never fell before the sweep diverged"):
            r = find_lr(model, opt, None, _batches(), step_fn=_plateau_step(opt, edge=0.5), target=target)
        assert r.status == "flat" and r.stopped_at is not None
        edge = r.lrs[r.stopped_at]
        assert 0.5 < edge < 5.0  # it did diverge just past 0.5
        readings[target] = r.suggestion
        assert math.isclose(r.suggestions["lrkit"], edge * 10**-FLAT_DECADES)
    # not the start of the sweep, where the minimum of a flat curve's noise may lie
    assert 1e-4 < readings["constant"] < 1e-2
    assert math.isclose(readings["onecycle"], readings["constant"] * math.sqrt(2))


def test_a_sweep_that_neither_falls_nor_diverges_suggests_nothing() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="neither fell nor diverged"):
        r = find_lr(model, opt, None, _batches(), step_fn=_plateau_step(opt, edge=None))
    assert r.status == "flat" and r.stopped_at is None and math.isnan(r.suggestion)
    with pytest.raises(ValueError, match="no usable LR"):
        r.schedule()


def test_verify_picks_among_candidates_on_validation_loss() -> None:
    val = _val()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = _state(model, opt)
    r = find_lr(
        model, opt, F.cross_entropy, _batches(), verify=True, val_loader=val, verify_steps=30, candidates=4
    )
    v = r.verification
    assert v is not None and v.on == "validation loss" and len(v.candidates) == 4
    assert v.total_steps == 4 * 30
    top = min(v.scores)
    assert len(v.errors) == 4 and v.errors[v.scores.index(top)] == 0.0
    tied = [c for c, sc, e in zip(v.candidates, v.scores, v.errors, strict=True) if sc - top <= e]
    assert r.suggestion == v.chosen == v.best == min(tied)  # no planned length: no correction
    assert v.horizon_factor == 1.0
    assert _same(_state(model, opt), before)


@pytest.mark.parametrize(
    ("curve", "expect"),
    [
        (lambda k: -1.0 - 0.01 * k if k < 60 else -1.6 + 0.3 * (k - 60), True),  # negative losses
        (lambda k: 2.3 - 0.03 * k if k < 60 else 1.6, True),  # diverged loss that levels off
        (lambda k: 2.3 - 0.02 * k if k < 50 else float("nan"), True),
        (lambda k: 2.3 - 0.02 * k if k < 50 else float("inf"), True),
        (lambda k: 2.3 - 0.01 * k + 0.02 * math.sin(k), False),  # steadily falling, noisy
    ],
)
def test_divergence_monitor(curve: Any, expect: bool) -> None:
    mon = DivergenceMonitor()
    fired = any(mon.update(curve(k)) for k in range(100))
    assert fired is expect


def test_smoothing_has_no_lag() -> None:
    x = np.linspace(-3, 3, 200)
    y = x**2
    assert int(np.argmin(smooth(y))) in (99, 100)


def test_a_diverged_loss_does_not_leak_into_the_smoothed_curve() -> None:
    # noisy plateau, a valley at index 55, then one enormous loss where the sweep stopped
    rng = np.random.default_rng(0)
    k = np.arange(73)
    y = 1.0 - 0.5 * np.exp(-0.5 * ((k - 55) / 6.0) ** 2) + 0.2 * rng.standard_normal(73)
    y[-1] = 1e12
    s = smooth(y)
    assert 48 <= int(np.argmin(s)) <= 62
    assert s.max() <= divergence_cap(y) and divergence_cap(y) < 2.0
    assert divergence_cap([-1.0, -1.1, -0.9, -1.5, -2.0, 5.0]) == pytest.approx(0.0)  # negative losses
    assert divergence_cap([math.nan, math.inf]) == math.inf


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "`start_lr` must be < `end_lr`"),
        ({"start_lr": 0.0}, "`start_lr` must be a finite number > 0"),
        ({"steps": 5}, "too few steps"),
        ({"mode": "log"}, "`mode` must be 'exp' or 'linear'"),
        ({"target": "cosine"}, "`target` must be one of constant, onecycle"),
        ({"accumulation": 0}, "`accumulation` must be an integer >= 1"),
        ({"seeds": 0}, "`seeds` must be an integer >= 1"),
        ({"snapshot": "gpu"}, "`snapshot` must be 'cpu' or 'disk'"),
        (
            {"clip_grad_norm": 0.0},
            "`clip_grad_norm` must be a finite number > 0 or None, got clip_grad_norm=0.0",
        ),
        ({"clip_grad_norm": math.inf}, "`clip_grad_norm` must be a finite number > 0 or None"),
        ({"clip_grad_norm": True}, "`clip_grad_norm` must be a finite number > 0 or None"),
        ({"clip_grad_norm": "1"}, "`clip_grad_norm` must be a finite number > 0 or None"),
        ({"start_lr": True}, "`start_lr` must be a finite number > 0, got start_lr=True"),
        ({"diverge": "a"}, "`diverge` must be a number in (0, 10], got diverge='a'"),
        ({"seed": 1.5}, "`seed` must be an integer >= 0, got seed=1.5"),
        ({"smooth_width": math.nan}, "`smooth_width` must be a number in (0, 1]"),
        ({"smooth_width": 0}, "`smooth_width` must be a number in (0, 1]"),
        ({"amp": None}, "`amp` must be True, False or a floating-point torch.dtype, got amp=None"),
        ({"amp": "no"}, "`amp` must be True, False or a floating-point torch.dtype, got amp='no'"),
        ({"amp": torch.int8}, "`amp` must be True, False or a floating-point torch.dtype"),
        ({"verify": "yes"}, "`verify` must be None, True or False, got verify='yes'"),
        ({"on_step": 5}, "`on_step` must be None or a function"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    model = _model()
    before = _state(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, _batches(), **kwargs)
    assert _same(_state(model, torch.optim.SGD(model.parameters(), lr=0.1)), before)  # nothing trained


def test_a_frozen_first_param_group_does_not_hide_the_sweep() -> None:
    """A group with lr=0 (a frozen backbone) first in the optimizer: the sweep still records its
    LRs, and reads the same curve as with the groups the other way round."""
    results = []
    for first_frozen in (True, False):
        model = _model()
        groups = [{"params": model[0].parameters(), "lr": 0.0}, {"params": model[2].parameters()}]
        opt = torch.optim.SGD(groups if first_frozen else groups[::-1], lr=0.1)
        results.append(find_lr(model, opt, F.cross_entropy, _batches(), steps=40))
        assert [g["lr"] for g in opt.param_groups] == ([0.0, 0.1] if first_frozen else [0.1, 0.0])
    frozen, other = results
    assert frozen.lrs == other.lrs and frozen.lrs[0] == 1e-7
    assert frozen.losses == other.losses and frozen.suggestion == other.suggestion
    assert frozen.status == other.status != "flat"


@pytest.mark.parametrize("vectorize", [True, False])
def test_dict_inputs_are_verified_together_and_alone_alike(vectorize: bool) -> None:
    x, y = _data()
    batches = [({"x": x[i : i + 32]}, y[i : i + 32]) for i in range(0, 512, 32)]
    val = [({"x": x[:128]}, y[:128])]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _model()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    torch.manual_seed(0)
    model = Net()
    r = find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, batches,
                val_loader=val, train_steps=200, vectorize=vectorize)  # fmt: skip
    assert r.verification is not None and r.verification.vectorized is vectorize
    same = _model()  # the same initial weights as the wrapped one
    plain = find_lr(same, torch.optim.SGD(same.parameters(), lr=0.1), F.cross_entropy,
                    [(b["x"], t) for b, t in batches], val_loader=[(x[:128], y[:128])], train_steps=200,
                    vectorize=vectorize)  # fmt: skip
    assert plain.verification is not None
    np.testing.assert_allclose(r.verification.scores, plain.verification.scores, rtol=1e-5)
    assert r.suggestion == plain.suggestion


@pytest.mark.parametrize("snapshot", ["cpu", "disk"])
def test_a_buffer_left_out_of_the_state_dict_comes_back(snapshot: str, tmp_path: Path) -> None:
    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _model()
            self.register_buffer("seen", torch.zeros(()), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                self.seen = self.seen + len(x)  # a new tensor each step, not an in-place update
            return self.body(x)

    model = Counting()
    seen = model.seen
    find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, _batches(),
            val_loader=_batches()[:4], train_steps=200, snapshot=snapshot, snapshot_dir=tmp_path)  # fmt: skip
    assert model.seen is seen and float(seen) == 0.0


def test_bad_inputs_name_the_problem() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="yielded no batches"):
        find_lr(model, opt, F.cross_entropy, [])
    taken = []

    def counted(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        taken.append(1)
        return F.cross_entropy(m(batch[0]), batch[1])

    with pytest.raises(ValueError, match="`val_loader` yielded no batches"):  # said before the sweep
        find_lr(model, opt, None, _batches(), step_fn=counted, val_loader=[])
    assert taken == []
    with pytest.raises(ValueError, match="scalar tensor, got shape"):
        find_lr(model, opt, lambda out, y: F.cross_entropy(out, y, reduction="none"), _batches())
    frozen = _model()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        find_lr(frozen, torch.optim.SGD(frozen.parameters(), lr=0.1), F.cross_entropy, _batches())
    other = _model(seed=1)
    with pytest.raises(ValueError, match="none of the model's trainable parameters"):
        find_lr(model, torch.optim.SGD(other.parameters(), lr=0.1), F.cross_entropy, _batches())
    with pytest.raises(ValueError, match=r"must be \(inputs, target\)"):
        find_lr(model, opt, F.cross_entropy, [torch.randn(4, 8)])
    with pytest.raises(ValueError, match="give `loss_fn`"):
        find_lr(model, opt, None, _batches())
    # a generator runs out and cannot start a new epoch: said so, not "yielded no batches"
    few = iter(_batches()[:3])
    with pytest.raises(ValueError, match="`train_loader` ran out after 3 batches and cannot start again"):
        find_lr(model, opt, F.cross_entropy, few)
    with pytest.raises(ValueError, match=r"`val_loader` must be a loader that can be iterated anew.*list_it"):
        find_lr(model, opt, F.cross_entropy, _batches(), val_loader=iter(_val()))
    # an optimizer that cannot step without a closure, and a scheduler or scaler that cannot be
    # saved and restored, are refused before anything trains
    for attached in (False, True):  # a torch scheduler wraps the optimizer's step
        lbfgs = torch.optim.LBFGS(model.parameters())
        if attached:
            torch.optim.lr_scheduler.StepLR(lbfgs, step_size=10)
        with pytest.raises(ValueError, match=r"`optimizer` is LBFGS, whose step\(\) needs a closure"):
            find_lr(model, lbfgs, F.cross_entropy, _batches())
    with pytest.raises(TypeError, match=r"`scheduler` must be None or an object with state_dict.*got int"):
        find_lr(model, opt, F.cross_entropy, _batches(), scheduler=3)
    with pytest.raises(TypeError, match=r"`scaler` must be .*GradScaler\), got str without is_enabled"):
        find_lr(model, opt, F.cross_entropy, _batches(), scaler="fp16")
    assert _same(model.state_dict(), _model().state_dict())  # nothing changed by the failures


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_called_under_no_grad_or_inference_mode_the_test_still_trains(context: Any) -> None:
    """As from a validation hook (model and batches made outside inference mode): the same
    result as outside, and everything restored afterwards."""

    def run(ctx: Any) -> Any:
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        train, val = _batches(), _val()
        with ctx():
            r = find_lr(model, opt, F.cross_entropy, train, steps=40, val_loader=val, verify_steps=10)
            assert torch.is_grad_enabled() == (ctx is contextlib.nullcontext)  # the mode is back
        assert _same(model.state_dict(), _model().state_dict()) and not opt.state
        return r

    plain, inside = run(contextlib.nullcontext), run(context)
    assert inside.verification is not None and plain.verification is not None
    assert inside.losses == plain.losses and inside.verification.scores == plain.verification.scores
    assert inside.suggestion == plain.suggestion


def _scripted(losses: torch.Tensor) -> tuple[list[Any], Callable[..., torch.Tensor]]:
    """Batches and a step function whose loss at step i is ``losses[i]``, whatever the LR."""
    batches = [(torch.zeros(1, 8), v) for v in losses]
    return batches, lambda model, batch: model(batch[0]).sum() * 0.0 + batch[1]


@pytest.mark.parametrize(
    ("curve", "warning"),
    [
        ("noise", "neither diverged nor clearly rose after its lowest point"),
        ("falling", "the loss was still falling at end_lr=10"),
        ("valley", None),
        ("late", "the loss was already falling at start_lr=1e-07"),
    ],
)
def test_a_sweep_that_never_turns_up_says_so(curve: str, warning: str | None) -> None:
    """A loss that ends as low as it got, without diverging, has not shown where training breaks
    down: the sweep says so (still falling at the end, or, over noise, never clearly rising);
    nor has one that was falling from its first LR shown where the loss starts to fall."""
    g = torch.Generator().manual_seed(0)
    noise = 0.05 * torch.randn(80, generator=g)
    x = torch.linspace(-7.0, 1.0, 80)  # log10 of the sweep's LRs
    flat_start = torch.clamp(x + 4.0, min=0.0)  # decades past 1e-4, where the loss starts to move
    losses = {
        "noise": 2.0 + 0.1 * (x < -5.0) + noise,  # a small fall near 1e-5, then nothing but noise
        "falling": 2.0 - 0.1 * flat_start + noise,
        "valley": 2.0 + 0.3 * ((flat_start - 2.0) ** 2 - 4.0) / 9 + noise,  # lowest at 1e-2
        "late": 2.0 + 0.3 * (x + 4.0) ** 2 / 9 + noise,  # falling fastest at the first LR
    }[curve]
    batches, step = _scripted(losses)
    model = _model()
    r = find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), None, batches, step_fn=step)
    assert r.status == ("diverged" if curve == "late" else "ok")
    said = [w for w in r.warnings if "end_lr" in w or "start_lr" in w]
    assert said == [] if warning is None else len(said) == 1 and warning in said[0]


@pytest.mark.parametrize("vectorize", [True, False])
def test_the_test_trains_in_the_modes_the_caller_set(vectorize: bool) -> None:
    """A frozen BatchNorm (eval mode in a model that trains) stays frozen through the sweep and
    verification, and dropout stays on; a model left entirely in eval mode trains in train mode.
    Every module's mode is as it was afterwards."""
    seen: dict[str, set[bool]] = {"bn": set(), "dropout": set()}

    def record(name: str) -> Any:
        return lambda module, args, out: seen[name].add(module.training)

    model = _model(bn=True)
    bn, dropout = model[1], model[3]
    bn.register_forward_hook(record("bn"))
    dropout.register_forward_hook(record("dropout"))
    bn.eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kwargs: dict[str, Any] = {"steps": 40, "val_loader": _val(), "verify_steps": 10, "vectorize": vectorize}
    r = find_lr(model, opt, F.cross_entropy, _batches(), **kwargs)
    assert r.verification is not None and r.verification.vectorized == vectorize
    assert seen == {"bn": {False}, "dropout": {True, False}}  # dropout: off for the validation passes
    assert model.training and dropout.training and not bn.training
    seen = {"bn": set(), "dropout": set()}
    model.eval()
    find_lr(model, opt, F.cross_entropy, _batches(), **kwargs)
    assert seen == {"bn": {True, False}, "dropout": {True, False}}
    assert not any(m.training for m in model.modules())


def test_a_generator_with_enough_batches_is_a_train_loader() -> None:
    batches = _batches() * 4  # 64: the sweep takes 40, verification 10 (its candidates replay them)
    model = _model()
    r = find_lr(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        F.cross_entropy,
        (b for b in batches),
        steps=40,
        val_loader=_val(),
        verify_steps=10,
        candidates=5,
    )
    assert r.verification is not None and math.isfinite(r.suggestion)


@pytest.mark.parametrize("name", ["dog", "ldog", "prodigy"])
def test_learning_rate_free_optimizers_are_refused(name: str) -> None:
    # Their lr multiplies a step they set themselves; swept from tiny multipliers, that step stays
    # tiny (DoG on mlp-digits at the suggested multiplier 4.5e-4 stayed at chance accuracy).
    from lrkit import optim

    model = _model()
    opt = optim.make(name, model)
    before = [p.detach().clone() for p in model.parameters()]
    cls = type(opt).__name__
    message = rf"`optimizer` is {cls}, which sets its own step size.*keep lr=1\.0"
    with pytest.raises(ValueError, match=message):
        find_lr(model, opt, F.cross_entropy, _batches())
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert optim.get(name).learning_rate_free
    assert not any(optim.get(n).learning_rate_free for n in ("sgd", "momentum", "adam", "kfac"))


def test_schedule_from_constant_result() -> None:
    model = _model()
    r = find_lr(model, torch.optim.Adam(model.parameters()), F.cross_entropy, _batches())
    assert r.schedule("constant") == constant(r.suggestion)


def test_a_schedule_for_the_other_target_takes_its_own_reading_or_is_refused(tmp_path: Path) -> None:
    """A constant LR and a one-cycle peak are different answers: an unverified result gives each
    kind the curve's reading for it; a verified one refuses the kind it was not verified for."""
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    flat = find_lr(model, opt, F.cross_entropy, _batches())
    peak = find_lr(model, opt, F.cross_entropy, _batches(), target="onecycle")
    assert flat.suggestions["lrkit-peak"] > flat.suggestion
    cycle = flat.schedule("onecycle", steps=100)
    assert isinstance(cycle, OneCycle) and cycle.lr == flat.suggestions["lrkit-peak"]
    assert peak.schedule("constant") == constant(peak.suggestions["lrkit"])
    assert peak.schedule("constant").lr < peak.suggestion
    verified = find_lr(model, opt, F.cross_entropy, _batches(), val_loader=_val(), verify_steps=10)
    assert verified.schedule("constant") == constant(verified.suggestion)
    with pytest.raises(ValueError, match=r"verified for target='constant'.*target='onecycle'"):
        verified.schedule("onecycle", steps=100)
    with pytest.raises(ValueError, match="`kind` must be 'auto', 'constant', 'onecycle' or 'cyclic'"):
        verified.schedule("cosine")
    verified.to_json(tmp_path / "r.json")
    again = FinderResult.from_json(tmp_path / "r.json")
    assert again.suggestion == verified.suggestion and again.verification == verified.verification


def _verify_both_ways(
    build: Callable[[], tuple[torch.nn.Module, torch.optim.Optimizer]],
    train: list[Any],
    loss_fn: Callable[..., torch.Tensor],
    around: float,
    **kwargs: Any,
) -> dict[bool, Any]:
    """`verify_candidates` on a fresh `build()` (seeded 0), with the candidates trained together and one
    after the other; the two `Verification`s by `vectorize`."""
    from lrkit.finder._snapshot import Snapshot
    from lrkit.finder._sweep import Batches, default_step
    from lrkit.finder._verify import verify_candidates

    out = {}
    for vectorize in (True, False):
        torch.manual_seed(0)
        model, opt = build()
        out[vectorize] = verify_candidates(
            model,
            opt,
            Snapshot(model, opt),
            Batches(train),
            default_step(loss_fn),
            around,
            accumulation=1,
            scaler=None,
            amp=False,
            seed=0,
            loss_fn=loss_fn,
            vectorize=vectorize,
            **kwargs,
        )
        assert out[vectorize].vectorized is vectorize
    return out


class _WithUnused(torch.nn.Module):
    """`net`, beside a layer whose parameters the forward pass never uses."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.unused = torch.nn.Linear(3, 3).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1),
        lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-3),
        lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True),
        lambda p: torch.optim.AdamW(p, lr=1e-3),
        lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True, weight_decay=1e-3),
        lambda p: torch.optim.Adagrad(p, lr=1e-2, lr_decay=1e-3),
    ],
)
@pytest.mark.parametrize("target", ["constant", "onecycle"])
@pytest.mark.parametrize("extra", ["", "bn", "unused", "groups"])
def test_vectorized_verification_equals_one_after_the_other(make_opt: Any, target: str, extra: str) -> None:
    """The same scores and errors either way, also with BatchNorm (each candidate's running
    statistics are its own, and the validation pass in eval mode uses them), with a layer that
    the loss does not use, and with two param groups (the biases at a third of the LR, without
    weight decay, as a scale of the candidates' LR)."""
    val = [(x.double(), y) for x, y in _val()]
    train = [(a.double(), b) for a, b in _batches()]

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        norm = [torch.nn.BatchNorm1d(16)] if extra == "bn" else []
        model: torch.nn.Module = torch.nn.Sequential(
            torch.nn.Linear(8, 16), *norm, torch.nn.Tanh(), torch.nn.Linear(16, 3)
        ).double()
        if extra == "unused":
            model = _WithUnused(model)
        if extra != "groups":
            return model, make_opt(model.parameters())
        opt = make_opt([p for n, p in model.named_parameters() if n.endswith("weight")])
        biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
        opt.add_param_group({"params": biases, "lr": opt.defaults["lr"] / 3, "weight_decay": 0.0})
        return model, opt

    v = _verify_both_ways(
        build, train, F.cross_entropy, 0.01, target=target, steps=40, candidates=4, val_loader=val
    )
    assert v[True].vectorized
    np.testing.assert_allclose(v[True].scores, v[False].scores, rtol=1e-6)
    np.testing.assert_allclose(v[True].errors, v[False].errors, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("buffered", [True, False])
def test_each_param_group_takes_torchs_step_at_its_own_scale_bit_for_bit(
    buffered: bool, check_stacked_step: Callable[..., None]
) -> None:
    """AdamW with a second group at half the LR, without weight decay and with other betas: each
    candidate's slice of each group moves exactly as torch's own two-group optimizer moves a
    lone copy."""

    def make(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            [
                {"params": params[:1]},
                {"params": params[1:], "lr": lr / 2, "weight_decay": 0.0, "betas": (0.8, 0.9)},
            ],
            lr=lr,
            weight_decay=0.1,
            foreach=False,
        )

    check_stacked_step(make, shapes=[(4, 3), (3,)], buffered=buffered, scales=[1.0, 0.5])


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p, lr: torch.optim.SGD(p, lr=lr, foreach=False),
        lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=1e-2, foreach=False),
        lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True, foreach=False),
        lambda p, lr: torch.optim.Adam(p, lr=lr, foreach=False),
        lambda p, lr: torch.optim.Adam(p, lr=lr, weight_decay=1e-2, foreach=False),
        lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=0.1, foreach=False),
        lambda p, lr: torch.optim.RMSprop(p, lr=lr, foreach=False),
        lambda p, lr: torch.optim.RMSprop(p, lr=lr, weight_decay=1e-2, centered=True, foreach=False),
        lambda p, lr: torch.optim.RMSprop(p, lr=lr, momentum=0.9, alpha=0.9, foreach=False),
        lambda p, lr: torch.optim.RMSprop(p, lr=lr, momentum=0.5, centered=True, foreach=False),
        lambda p, lr: torch.optim.Adagrad(p, lr=lr, foreach=False),
        lambda p, lr: torch.optim.Adagrad(
            p, lr=lr, lr_decay=0.1, weight_decay=1e-2, initial_accumulator_value=0.5, foreach=False
        ),
    ],
)
@pytest.mark.parametrize("buffered", [True, False])
def test_the_stacked_step_is_torchs_bit_for_bit(
    make_opt: Any, buffered: bool, check_stacked_step: Callable[..., None]
) -> None:
    """Given the same gradients, each candidate's slice takes exactly the step of torch's SGD
    (plain, heavy ball, Nesterov), Adam, AdamW, RMSprop or Adagrad (their arithmetic per
    candidate, not a broadcast approximation of it), at LR ``lr * factor``, with the square roots
    in a buffer kept across steps (the CPU's choice) or made each step (the accelerators')."""
    check_stacked_step(make_opt, shapes=[(4, 3), (3,)], buffered=buffered)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_diverging_candidate_leaves_the_others_alone_when_vectorized(momentum: float) -> None:
    """Least squares whose two largest candidates blow up (their loss leaves float32's range):
    they score inf both ways, and the others score the same whether trained together or one
    after the other."""
    g = torch.Generator().manual_seed(3)
    x = 10 * torch.randn(256, 8, generator=g, dtype=torch.float64)
    y = x @ torch.randn(8, 1, generator=g, dtype=torch.float64)
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = torch.nn.Linear(8, 1).double()
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)

    v = _verify_both_ways(
        build, train, F.mse_loss, 0.003, target="constant", steps=300, candidates=5, val_loader=train[:2]
    )
    assert [math.isinf(s) for s in v[True].scores] == [False, False, False, True, True]
    np.testing.assert_allclose(v[True].scores, v[False].scores, rtol=1e-6)


class _Attention(torch.nn.Module):
    """A one-layer transformer encoder over 4 tokens of 2 features each, pooled to 3 classes."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(2, 16)
        self.layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=dropout, batch_first=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.layer(self.embed(x.view(-1, 4, 2))).mean(1))
        return out


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_transformer_candidates_train_together(dropout: float) -> None:
    """Attention trains vectorized (its fused kernels have no batching rule on the CPU, and the
    layers' fused inference path none anywhere: verification steps around both), scores as one
    after the other where no dropout draws differently, and leaves torch's attention settings as
    it found them."""
    val = [(x.double(), y) for x, y in _val()]
    train = [(a.double(), b) for a, b in _batches()]

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = _Attention(dropout).double()
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    fastpath = torch.backends.mha.get_fastpath_enabled()
    v = _verify_both_ways(
        build, train, F.cross_entropy, 3e-3, target="constant", steps=30, candidates=3, val_loader=val
    )
    assert v[True].vectorized and not v[False].vectorized
    assert torch.backends.mha.get_fastpath_enabled() == fastpath
    if dropout == 0.0:
        np.testing.assert_allclose(v[True].scores, v[False].scores, rtol=1e-6)
    else:
        assert all(math.isfinite(s) for s in v[True].scores)


class _InterruptedWhenStacked(_Attention):
    """Attention whose forward pass is interrupted once its weights are stacked."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch._C._functorch.is_batchedtensor(self.head.weight):
            raise KeyboardInterrupt
        return super().forward(x)


def test_an_interrupt_while_trying_candidates_together_puts_torchs_attention_settings_back() -> None:
    model = _InterruptedWhenStacked(0.0)
    opt = torch.optim.Adam(model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        find_lr(model, opt, F.cross_entropy, _batches(), val_loader=_val(), train_steps=100)
    except KeyboardInterrupt:  # checked while the traceback, and every frame in it, is alive
        assert torch.backends.mha.get_fastpath_enabled() == fastpath
    else:
        pytest.fail("the interrupt did not come through")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


class _Unbatchable(torch.nn.Module):
    """A model that cannot train its candidates together: its forward pass branches on a
    tensor's value, which vmap cannot batch (`branch`), or it runs out of memory when its
    parameters are stacked (`memory`, as a large model on an accelerator would)."""

    def __init__(self, why: str) -> None:
        super().__init__()
        self.net = _model()
        self.why = why

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.why == "memory" and torch._C._functorch.is_batchedtensor(self.net[0].weight):
            raise torch.OutOfMemoryError("out of memory (simulated)")
        out = self.net(x)
        return out if self.why != "branch" or bool(out.abs().max() < 1e6) else out.clamp(-1e6, 1e6)


@pytest.mark.parametrize("why", ["branch", "memory"])
def test_candidates_that_cannot_train_together_train_one_after_the_other(why: str) -> None:
    """The vectorized path gives up before its first step, and the candidates then see exactly
    the batches they would have seen without it."""
    val = _val()
    results = []
    for vectorize in (True, False):
        model = _Unbatchable(why)
        opt = torch.optim.Adam(model.parameters())
        results.append(
            find_lr(
                model, opt, F.cross_entropy, _batches(), val_loader=val, train_steps=100, vectorize=vectorize
            )
        )
    tried, plain = (r.verification for r in results)
    assert tried is not None and plain is not None
    assert tried.vectorized is False and plain.vectorized is False
    assert tried.scores == plain.scores and tried.chosen == plain.chosen


def test_without_validation_data_a_batchnorm_model_ranks_on_training_loss_either_way() -> None:
    results = []
    for vectorize in (True, False):
        model = _model(bn=True).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        batches = [(a.double(), b) for a, b in _batches()]
        results.append(
            find_lr(model, opt, F.cross_entropy, batches, verify=True, verify_steps=12, vectorize=vectorize)
        )
    together, apart = (r.verification for r in results)
    assert together is not None and apart is not None
    assert together.vectorized and not apart.vectorized
    assert together.on == apart.on == "training loss"
    np.testing.assert_allclose(together.scores, apart.scores, rtol=1e-6)


def test_vectorize_false_trains_the_candidates_one_after_the_other() -> None:
    val = _val()
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    on = find_lr(model, opt, F.cross_entropy, _batches(), val_loader=val, train_steps=100)
    off = find_lr(model, opt, F.cross_entropy, _batches(), val_loader=val, train_steps=100, vectorize=False)
    assert on.verification is not None and off.verification is not None
    assert on.verification.vectorized and not off.verification.vectorized
    np.testing.assert_allclose(on.verification.scores, off.verification.scores, rtol=1e-5)
    with pytest.raises(ValueError, match=r"`vectorize` must be True or False, got vectorize='no'"):
        find_lr(model, opt, F.cross_entropy, _batches(), val_loader=val, vectorize="no")  # type: ignore[arg-type]


def test_verification_is_on_by_default_with_validation_data_and_stays_within_budget() -> None:
    val = _val()
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    r = find_lr(model, opt, F.cross_entropy, _batches(), val_loader=val, train_steps=200)
    v = r.verification
    assert v is not None and v.on == "validation loss" and v.vectorized
    assert v.total_steps <= 200 and v.steps == 40
    # half-decade grid points, a decade (give or take a quarter) on either side of the reading
    halves = [2 * math.log10(c) for c in v.candidates]
    assert halves == pytest.approx([round(h) for h in halves]) and np.diff(halves) == pytest.approx(1.0)
    assert abs(math.log10(v.candidates[0] * 10 / r.suggestions["lrkit"])) <= 0.25 + 1e-9
    assert abs(math.log10(v.candidates[-1] / 10 / r.suggestions["lrkit"])) <= 0.25 + 1e-9
    off = find_lr(model, opt, F.cross_entropy, _batches(), val_loader=val, verify=False)
    assert off.verification is None and off.suggestion == off.suggestions["lrkit"]
    with pytest.raises(ValueError, match="`train_steps` must be an integer >= 1"):
        find_lr(model, opt, F.cross_entropy, _batches(), val_loader=val, train_steps=0)
    # a verification that cannot be done as asked is refused before the sweep, not after it
    calls = []
    for kwargs, message in (
        (
            {"train_steps": 24},
            r"`train_steps` must be >= 25 to verify 5 candidates within it .*got train_steps=24",
        ),
        ({"train_steps": 24, "candidates": 4}, None),
        ({"verify_steps": 4}, r"`verify_steps` must be an integer >= 5, got verify_steps=4"),
        ({"candidates": 1}, r"`candidates` must be an integer >= 2, got candidates=1"),
    ):
        if message is None:
            r = find_lr(model, opt, F.cross_entropy, _batches(), val_loader=val, **kwargs)
            assert r.verification is not None and r.verification.steps == 6
            continue
        with pytest.raises(ValueError, match=message):
            find_lr(
                model,
                opt,
                F.cross_entropy,
                _batches(),
                val_loader=val,
                on_step=lambda done, total: calls.append(done),
                **kwargs,
            )
    assert calls == []  # no sweep step was taken


def test_selection_takes_the_smallest_lr_within_one_standard_error_and_corrects_for_short_runs() -> None:
    from lrkit.finder._choice import select

    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    inf = math.inf
    assert select(lrs, [2.0, 1.05, 1.0, inf], [0.5, 0.06, 0.0, inf], 50, None) == (1e-2, 1.0)
    assert select(lrs, [2.0, 1.05, 1.0, inf], [0.5, 0.04, 0.0, inf], 50, None) == (1e-1, 1.0)
    assert select(lrs, [2.0, 1.05, 1.0, 1.1], None, 50, None) == (1e-1, 1.0)  # no errors: the minimum
    best, factor = select(lrs, [2.0, 1.2, 1.0, 1.1], [0.1] * 4, 50, 200)
    assert best == 1e-1 and factor == pytest.approx(0.5)  # sqrt(50 / 200)
    assert select(lrs, [inf] * 4, [inf] * 4, 50, 200) == (None, 1.0)
    assert select([1.0, 2.0], [-1.0, -1.005], [0.01, 0.0], 10, None) == (1.0, 1.0)  # negative scores too
    with pytest.raises(ValueError, match="same length"):
        select(lrs, [1.0] * 4, [0.0] * 3, 10, None)


def test_paired_errors_see_through_a_shared_offset() -> None:
    from lrkit.finder._choice import paired_scores

    rng = np.random.default_rng(0)
    hard = rng.normal(1.0, 0.5, 40)  # how hard each piece is, shared by every candidate
    a = hard + rng.normal(0.0, 0.01, 40)
    b = hard + 0.05 + rng.normal(0.0, 0.01, 40)
    scores, errors = paired_scores([a, b, np.full(40, np.nan)])
    assert scores[0] < scores[1] and scores[2] == math.inf and errors[2] == math.inf
    assert errors[0] == 0.0 and errors[1] < 0.01  # unpaired, the error would be about 0.11
    assert scores[1] - scores[0] > errors[1]  # a real difference: not tied
    weighted, _ = paired_scores([[1.0, 3.0]], [3.0, 1.0])
    assert weighted == [1.5]
    assert paired_scores([[1.0], [2.0]]) == ([1.0, 2.0], [0.0, 0.0])  # one piece: no error estimate
    with pytest.raises(ValueError, match="`weights` must be 2 positive numbers"):
        paired_scores([[1.0, 2.0]], [1.0, 0.0])


def test_candidates_lie_on_a_fixed_grid_whatever_the_reading() -> None:
    from lrkit.finder._choice import candidate_grid

    a = candidate_grid(0.011, 5, 1.0)
    assert a == candidate_grid(0.0092, 5, 1.0) == candidate_grid(0.0132, 5, 1.0)
    assert a == pytest.approx([1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1])
    assert candidate_grid(0.02, 5, 1.0) == pytest.approx([10**-2.5, 1e-2, 10**-1.5, 1e-1, 10**-0.5])
    three = candidate_grid(3e-4, 3, 1.0)  # a grid of whole decades
    assert three == pytest.approx([1e-5, 1e-4, 1e-3])
    with pytest.raises(ValueError, match="`candidates` must be an integer >= 2"):
        candidate_grid(0.01, 1, 1.0)


def test_validation_loss_in_pieces_is_the_loss_over_the_examples() -> None:
    from lrkit.finder._sweep import default_step, pieces, val_pieces

    x, y = _data(n=100, seed=2)
    val = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 100, 32)]  # 32, 32, 32, 4
    model = _model()
    losses, sizes = val_pieces(model, val, default_step(F.cross_entropy), F.cross_entropy)
    assert len(losses) == 8 + 8 + 8 + 4 and sum(sizes) == 100
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        whole = float(F.cross_entropy(model(x), y))
    model.train()
    assert np.average(losses, weights=sizes) == pytest.approx(whole, rel=1e-5)
    by_batch, ones = val_pieces(model, val, default_step(F.cross_entropy))  # no loss_fn: whole batches
    assert len(by_batch) == 4 and ones == [1.0] * 4
    sizes10 = [p.stop - p.start for p in pieces(10)]
    assert len(sizes10) == 8 and sum(sizes10) == 10 and max(sizes10) - min(sizes10) == 1


def test_one_standard_error_rule_prefers_the_smaller_lr_on_a_tiny_validation_set() -> None:
    """Two candidates scored on four pieces: a lower mean that the pieces disagree about is a tie
    (the smaller LR wins); the same mean difference agreed on by every piece is not."""
    from lrkit.finder._choice import paired_scores, select

    small = np.array([0.8, 1.3, 0.9, 1.1])
    noisy = small - np.array([0.1, -0.08, 0.05, 0.0])
    scores, errors = paired_scores([small, noisy])
    assert scores[1] < scores[0] and scores[0] - scores[1] <= errors[0]
    assert select([1e-3, 1e-2], scores, errors, 10, None)[0] == 1e-3
    steady = small - 0.0175
    scores, errors = paired_scores([small, steady])
    assert scores[0] - scores[1] == pytest.approx(0.0175) and errors[0] == pytest.approx(0.0, abs=1e-12)
    assert select([1e-3, 1e-2], scores, errors, 10, None)[0] == 1e-2


def _large_gradients() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Least squares on inputs of scale 10: gradients large enough that clipping binds."""
    g = torch.Generator().manual_seed(3)
    x = 10 * torch.randn(512, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]


def test_clipped_gradients_let_the_sweep_reach_larger_lrs_and_are_unscaled_first() -> None:
    """Clipped as the training will be, the sweep no longer diverges where the raw gradients
    would make it; with a GradScaler the gradients are unscaled before clipping, so the sweep is
    the same as without one (the scale is a power of two: exact)."""
    train = _large_gradients()

    def run(clip: float | None, scaler: Any = None) -> FinderResult:
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 1)
        return find_lr(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            F.mse_loss,
            train,
            clip_grad_norm=clip,
            scaler=scaler,
        )

    raw, clipped = run(None), run(1.0)
    assert raw.status == "diverged" and clipped.status != "diverged"
    assert clipped.lrs[-1] > 100 * raw.lrs[-1] and clipped.suggestion > 10 * raw.suggestion
    scaled = run(1.0, torch.amp.GradScaler("cpu", init_scale=2.0**10))
    assert scaled.losses == clipped.losses and scaled.lrs == clipped.lrs


@pytest.mark.parametrize(
    "make_opt",
    [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.AdamW(p, lr=1e-3)],
)
def test_clipped_candidates_score_the_same_together_and_one_after_the_other(make_opt: Any) -> None:
    """Each stacked candidate is clipped on its own gradient's norm, as one trained alone is."""
    train = [(x.double(), y.double()) for x, y in _large_gradients()]

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
        return model, make_opt(model.parameters())

    kwargs = {"target": "constant", "steps": 40, "candidates": 4, "val_loader": train[:4]}
    v = _verify_both_ways(build, train, F.mse_loss, 0.01, clip=0.5, **kwargs)
    assert v[True].vectorized and not v[False].vectorized
    np.testing.assert_allclose(v[True].scores, v[False].scores, rtol=1e-6)
    unclipped = _verify_both_ways(build, train, F.mse_loss, 0.01, **kwargs)
    assert not np.allclose(unclipped[True].scores, v[True].scores, rtol=1e-3)  # the clipping binds
