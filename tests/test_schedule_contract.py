"""One parametrized table over every schedule: the contract each one must keep."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as L

from lrkit.adapters.torch import ScheduleLR
from lrkit.schedules import Schedule, from_config, parse, registry

N = 1500  # > one cached block (1024) of the torch binding

TorchMaker = Callable[[torch.optim.Optimizer], Any]


def _with_state(
    spec: str, metrics: tuple[float, ...] = (1.0, 0.9, 0.95, 0.97, 0.99, 0.98, 1.2, 1.1)
) -> Schedule:
    """A plateau schedule that has already reduced twice (state in its config)."""
    s = parse(spec)
    for k, metric in enumerate(metrics):
        s = s.observe(100 * k, metric)
    return s


# (id, spec or schedule, torch counterpart or None). The torch scheduler is built on an SGD
# optimizer whose lr is 0.1.
TABLE: list[tuple[str, str | Schedule, TorchMaker | None]] = [
    ("constant", "constant(0.1)", lambda o: L.ConstantLR(o, factor=1.0, total_iters=1)),
    ("constant-steps", "constant(0.1, steps=50) >> cosine(0.1, steps=100)", None),
    ("step", "step(0.1, every=30, factor=0.1)", lambda o: L.StepLR(o, 30, 0.1)),
    ("step-gentle", "step(0.1, every=100, factor=0.7)", lambda o: L.StepLR(o, 100, 0.7)),
    (
        "multistep",
        "multistep(0.1, milestones=[30, 80], factor=0.1)",
        lambda o: L.MultiStepLR(o, [30, 80], 0.1),
    ),
    (
        "multistep-late",
        "multistep(0.1, milestones=[300, 800, 1200], factor=0.5)",
        lambda o: L.MultiStepLR(o, [300, 800, 1200], 0.5),
    ),
    ("exponential", "exponential(0.1, factor=0.95)", lambda o: L.ExponentialLR(o, 0.95)),
    ("exponential-slow", "exponential(0.1, factor=0.999)", lambda o: L.ExponentialLR(o, 0.999)),
    ("exponential-staircase", "exponential(0.1, factor=0.5, every=100, staircase=true)", None),
    ("inverse-time", "inverse_time(0.1, rate=0.5, every=10)", None),
    (
        "polynomial",
        "polynomial(0.1, steps=1000, power=2, end=0)",
        lambda o: L.PolynomialLR(o, total_iters=1000, power=2.0),
    ),
    ("polynomial-end", "polynomial(0.1, steps=100, power=0.5, end=0.01)", None),
    ("linear", "linear(0.05, 0.1, steps=500)", lambda o: L.LinearLR(o, 0.5, 1.0, 500)),
    ("linear-down", "linear(0.1, 0.01, steps=1000)", lambda o: L.LinearLR(o, 1.0, 0.1, 1000)),
    ("cosine", "cosine(0.1, steps=1000, end=0.001)", lambda o: L.CosineAnnealingLR(o, 1000, 0.001)),
    ("cosine-zero", "cosine(0.1, steps=1499)", lambda o: L.CosineAnnealingLR(o, 1499)),
    ("cosine-exponent", "cosine(0.1, steps=100, end=0.001, exponent=2)", None),
    ("one-minus-sqrt", "one_minus_sqrt(0.1, steps=100, end=0.001)", None),
    (
        "sgdr",
        "sgdr(0.1, period=10, mul=2, end=0)",
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2),
    ),
    (
        "sgdr-flat",
        "sgdr(0.1, period=7, end=0.01)",
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=1, eta_min=0.01),
    ),
    (
        "sgdr-mul3",
        "sgdr(0.1, period=5, mul=3, end=0.001)",
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=3, eta_min=0.001),
    ),
    ("sgdr-decay-cycles", "sgdr(0.1, period=10, mul=1.5, decay=0.7, cycles=4, end=0.001)", None),
    ("cyclic", "cyclic(0.001, 0.1, half=20)", lambda o: L.CyclicLR(o, 0.001, 0.1, 20, cycle_momentum=False)),
    (
        "cyclic-triangular2",
        'cyclic(0.001, 0.1, half=20, mode="triangular2")',
        lambda o: L.CyclicLR(o, 0.001, 0.1, 20, mode="triangular2", cycle_momentum=False),
    ),
    (
        "cyclic-exp-range",
        'cyclic(0.001, 0.1, half=20, down=13, mode="exp_range", gamma=0.999)',
        lambda o: L.CyclicLR(o, 0.001, 0.1, 20, 13, mode="exp_range", gamma=0.999, cycle_momentum=False),
    ),
    (
        "cyclic-momentum",
        "cyclic(0.001, 0.1, half=25, momentum_range=[0.8, 0.9])",
        lambda o: L.CyclicLR(o, 0.001, 0.1, 25),
    ),
    ("onecycle", "onecycle(0.1, steps=1000)", lambda o: L.OneCycleLR(o, 0.1, total_steps=1000)),
    ("onecycle-short", "onecycle(0.1, steps=100)", None),
    (
        "onecycle-3phase-linear",
        'onecycle(0.1, steps=1001, three_phase=true, anneal="linear")',
        lambda o: L.OneCycleLR(o, 0.1, total_steps=1001, three_phase=True, anneal_strategy="linear"),
    ),
    (
        "onecycle-odd",
        "onecycle(0.1, steps=1333, pct_start=0.25, div_factor=10, final_div_factor=100)",
        lambda o: L.OneCycleLR(o, 0.1, total_steps=1333, pct_start=0.25, div_factor=10, final_div_factor=100),
    ),
    ("onecycle-no-momentum", "onecycle(0.1, steps=300, momentum_range=none)", None),
    ("warmup-cosine", "warmup(10) >> cosine(0.1, steps=90)", None),
    ("warmup-cos-kind", 'warmup(50, kind="cosine") >> exponential(0.1, factor=0.99)', None),
    ("warmup-exp-kind", 'warmup(50, kind="exponential", start=0.01) >> step(0.1, every=200)', None),
    ("warmup-mid", "constant(0.01, steps=20) >> warmup(10, start=0.1) >> cosine(0.1, steps=900)", None),
    ("wsd", "wsd(0.1, warmup=10, stable=70, decay=20, end=0)", None),
    ("wsd-cosine", 'wsd(0.1, warmup=100, stable=700, decay=300, end=0.001, kind="cosine")', None),
    ("wsd-sqrt", 'wsd(0.1, warmup=0, stable=500, decay=500, kind="sqrt")', None),
    ("inverse-sqrt", "inverse_sqrt(0.1, warmup=10)", None),
    ("inverse-sqrt-timescale", "inverse_sqrt(0.1, timescale=100)", None),
    ("scale", "0.5 * cosine(0.1, steps=100)", None),
    ("shift", "cosine(0.1, steps=1000) + 0.001", None),
    ("product", "cosine(0.1, steps=1000) * exponential(1.0, factor=0.999)", None),
    ("clip", "clip(exponential(0.1, factor=0.99), low=0.001, high=0.05)", None),
    ("repeat", "repeat(linear(0.1, 0.01, steps=100), cycles=5, mul=1.5, decay=0.8)", None),
    ("horizon", "horizon(exponential(0.1, factor=0.99), steps=300)", None),
    ("noise", "noise(cosine(0.1, steps=1000), std=0.2, seed=3)", None),
    ("with-momentum", "with_momentum(cosine(0.1, steps=1000), linear(0.85, 0.99, steps=1000))", None),
    ("nested", "0.5 * (warmup(10) >> sgdr(0.1, period=50, mul=2)) + 0.0001", None),
    ("plateau", "plateau(0.1, factor=0.5, patience=3)", None),
    ("plateau-state", _with_state("plateau(0.1, factor=0.5, patience=1, cooldown=1)"), None),
    ("warmup-plateau-state", _with_state("warmup(50) >> plateau(cosine(0.1, steps=1000), patience=0)"), None),
    (
        "plateau-infinite-best",  # an infinite best is written as "-inf" in configs and specs
        _with_state("plateau(0.1, factor=0.5, patience=1)", (float("inf"), 1.0, float("-inf"), 0.5, 0.4)),
        None,
    ),
    ("warmup-onecycle", "warmup(50) >> onecycle(0.1, steps=1000)", None),
]


def _schedule(entry: str | Schedule) -> Schedule:
    return parse(entry) if isinstance(entry, str) else entry


IDS = [row[0] for row in TABLE]
ENTRIES = [row[1] for row in TABLE]


def test_table_covers_every_registered_schedule() -> None:
    seen = {node.name for e in ENTRIES for node in _schedule(e).walk()}
    assert set(registry()) - seen == set()


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_scalar_and_array_agree(entry: str | Schedule) -> None:
    s = _schedule(entry)
    steps = np.arange(N)
    vec = s(steps)
    scal = np.array([s(int(k)) for k in steps])
    assert vec.shape == (N,)
    np.testing.assert_array_equal(vec, scal)
    # shape is preserved for 2-D input, values equal
    np.testing.assert_array_equal(s(steps.reshape(30, 50)), vec.reshape(30, 50))
    assert isinstance(s(7), float)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_config_and_text_round_trip(entry: str | Schedule) -> None:
    s = _schedule(entry)
    cfg = json.loads(json.dumps(s.to_config()))
    again = from_config(cfg)
    assert again == s
    assert hash(again) == hash(s)
    assert parse(str(s)) == s
    assert str(parse(str(s))) == str(s)
    np.testing.assert_array_equal(again(np.arange(200)), s(np.arange(200)))


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_huge_steps_stay_finite(entry: str | Schedule) -> None:
    s = _schedule(entry)
    for k in (2**31, 2**40, 2**40 + 1, 2**52):
        v = s(k)
        assert np.isfinite(v) and v >= 0, (k, v)
    m = s.momentum(2**40)
    assert m is None or np.isfinite(m) or np.isnan(m)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_values_are_non_negative_and_finite(entry: str | Schedule) -> None:
    v = _schedule(entry)(np.arange(N))
    assert np.all(np.isfinite(v)) and np.all(v >= 0)


def _sgd(lr: float = 0.1, momentum: float = 0.9) -> torch.optim.SGD:
    p = torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD([p], lr=lr, momentum=momentum)


def _run(opt: torch.optim.Optimizer, sched: Any, n: int) -> tuple[list[float], list[float]]:
    lrs, moms = [], []
    for _ in range(n):
        lrs.append(float(opt.param_groups[0]["lr"]))
        moms.append(float(opt.param_groups[0]["momentum"]))
        opt.step()
        sched.step()
    return lrs, moms


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_torch_binding_equals_closed_form(entry: str | Schedule) -> None:
    s = _schedule(entry)
    opt = _sgd()
    lrs, moms = _run(opt, ScheduleLR(opt, s), N)
    np.testing.assert_array_equal(np.array(lrs), s(np.arange(N)))
    if s.has_momentum:
        expected = s.momentum(np.arange(N))
        expected = np.where(np.isnan(expected), 0.9, expected)
        np.testing.assert_array_equal(np.array(moms), expected)
    else:
        assert set(moms) == {0.9}


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
@pytest.mark.parametrize("cut", [0, 1, 37, 1023, 1024, N - 1])
def test_state_dict_resume_is_bit_exact(entry: str | Schedule, cut: int) -> None:
    s = _schedule(entry)
    opt = _sgd()
    straight = _run(opt, ScheduleLR(opt, s), N)

    opt1 = _sgd()
    sched1 = ScheduleLR(opt1, s)
    first = _run(opt1, sched1, cut)
    state = json.loads(json.dumps(sched1.state_dict()))  # plain data only
    opt_state = opt1.state_dict()

    opt2 = _sgd(lr=0.5, momentum=0.5)  # fresh objects, different construction values
    sched2 = ScheduleLR(opt2, s)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    second = _run(opt2, sched2, N - cut)
    assert first[0] + second[0] == straight[0]
    assert first[1] + second[1] == straight[1]


TORCH_ROWS = [(row[0], row[1], row[2]) for row in TABLE if row[2] is not None]


@pytest.mark.parametrize(("name", "entry", "make"), TORCH_ROWS, ids=[r[0] for r in TORCH_ROWS])
def test_matches_torch_scheduler(name: str, entry: str, make: TorchMaker) -> None:
    n = 1000 if name != "cosine-zero" else 1499
    opt = _sgd()
    torch_lrs, torch_moms = _run(opt, make(opt), n)
    s = _schedule(entry)
    ours = s(np.arange(n))
    np.testing.assert_allclose(ours, torch_lrs, rtol=1e-12, atol=0)
    if s.has_momentum:
        np.testing.assert_allclose(s.momentum(np.arange(n)), torch_moms, rtol=1e-12, atol=0)
