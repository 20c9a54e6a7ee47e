"""DoG, L-DoG and Prodigy: step sizes by their published definitions on hand-checked examples,
the LR as a multiplier driven by a schedule, the effective LR in a training history, and errors."""

from __future__ import annotations

import math

import pytest
import torch

from lrkit.adapters.torch import ScheduleLR
from lrkit.optim import DoG, Prodigy
from lrkit.schedules import cosine
from lrkit.tasks import get
from lrkit.train import fit


def _quadratic_steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int) -> list[float]:
    """Steps on f(x) = ||x||^2 / 2 (gradient x); the effective LR after each."""
    out = []
    for _ in range(steps):
        opt.zero_grad()
        sum(0.5 * p.pow(2).sum() for p in params).backward()  # type: ignore[union-attr]
        opt.step()
        out.append(opt.effective_lr())  # type: ignore[attr-defined]
    return out


def test_dog_step_sizes_follow_the_definition_by_hand() -> None:
    x = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    opt = DoG([x], reps_rel=0.1)  # r_eps = 0.1 * (1 + ||x0||) = 0.6
    etas = _quadratic_steps(opt, [x], 3)
    # step 0: nothing travelled, so rbar = r_eps = 0.6; sum of ||g||^2 = 25: eta = 0.6 / 5
    assert etas[0] == pytest.approx(0.12, rel=1e-12)
    # x1 = 0.88 x0: travelled 0.6 (= rbar), ||g1||^2 = 4.4^2 = 19.36
    assert etas[1] == pytest.approx(0.6 / math.sqrt(25 + 19.36), rel=1e-12)
    # x2 = (1 - eta1) x1: travelled 5 (1 - 0.88 (1 - eta1)) > 0.6, so rbar grows
    shrink = 0.88 * (1 - etas[1])
    assert etas[2] == pytest.approx(5 * (1 - shrink) / math.sqrt(44.36 + (5 * shrink) ** 2), rel=1e-12)
    x0 = torch.tensor([3.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(x.detach(), x0 * shrink * (1 - etas[2]))


def test_ldog_has_one_step_size_per_tensor_and_lr_multiplies() -> None:
    a = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    opt = DoG([a, b], lr=0.5, reps_rel=0.1, layer_wise=True)
    eff = _quadratic_steps(opt, [a, b], 1)
    eta_a, eta_b = 0.1 * 6 / 5, 0.1 * 2 / 1  # r_eps / ||g|| for each tensor alone
    assert opt.state[a]["eta"] == pytest.approx(eta_a) and opt.state[b]["eta"] == pytest.approx(eta_b)
    # one step size that moves as far: sqrt(sum (0.5 eta_i)^2 ||g_i||^2 / sum ||g_i||^2)
    assert eff[0] == pytest.approx(0.5 * math.sqrt((eta_a**2 * 25 + eta_b**2 * 1) / 26))
    torch.testing.assert_close(a.detach(), torch.tensor([3.0, 4.0], dtype=torch.float64) * (1 - 0.5 * eta_a))
    glob = DoG([torch.zeros(2, requires_grad=True)])
    assert math.isnan(glob.effective_lr())  # no step taken yet


def _prodigy_reference(steps: int, d0: float, beta1: float, beta2: float, eps: float) -> list[float]:
    """Algorithm 4 of Mishchenko & Defazio (2024) in plain floats on f(x) = x^2 / 2 from x0 = 1."""
    x0 = x = 1.0
    m = v = r = s = 0.0
    d, used = d0, []
    for _ in range(steps):
        g = x
        m = beta1 * m + (1 - beta1) * d * g
        v = beta2 * v + (1 - beta2) * d * d * g * g
        r = math.sqrt(beta2) * r + (1 - math.sqrt(beta2)) * d * d * g * (x0 - x)
        s = math.sqrt(beta2) * s + (1 - math.sqrt(beta2)) * d * d * g
        used.append(d)
        x -= d * m / (math.sqrt(v) + d * eps)
        d = max(d, r / abs(s))
    return used


def test_prodigy_d_estimate_follows_the_definition() -> None:
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = Prodigy([x], betas=(0.9, 0.99), d0=0.01)
    eff = _quadratic_steps(opt, [x], 2)
    # step 0: <g, x0 - x0> = 0, so r = 0 and d stays d0; Adam's first step moves by lr * d0
    assert eff[0] == 0.01
    # step 1: g = x1 = 0.99 (Adam's first step is -d0 * sign(g)); with c = 1 - sqrt(0.99):
    # r = c * d0^2 * 0.99 * (1 - 0.99) and ||s||_1 = sqrt(0.99) * c * d0^2 * 1 + c * d0^2 * 0.99
    c = 1 - math.sqrt(0.99)
    r, s = c * 1e-4 * 0.99 * 0.01, math.sqrt(0.99) * c * 1e-4 + c * 1e-4 * 0.99
    assert opt.param_groups[0]["r"] == pytest.approx(r, rel=1e-6)
    assert r / s == pytest.approx(0.0049874, rel=1e-4)  # below d0: d stays
    assert opt.d == 0.01 and eff[1] == 0.01

    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = Prodigy([x], betas=(0.9, 0.99), d0=1e-3)
    eff = _quadratic_steps(opt, [x], 200)
    expected = _prodigy_reference(200, 1e-3, 0.9, 0.99, 1e-8)
    assert eff == pytest.approx(expected, rel=1e-12)
    assert all(b >= a for a, b in zip(eff, eff[1:], strict=False))  # d never decreases
    assert 0.1 < eff[-1] <= 1.0  # from 1e-3 up toward the distance to the solution, 1
    assert abs(x.item()) < 1e-3


def test_a_schedule_on_lr_multiplies_the_adapted_step() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = Prodigy(model.parameters())
    sched = ScheduleLR(opt, cosine(1.0, steps=10))
    for step in range(6):
        lr = opt.param_groups[0]["lr"]
        assert lr == pytest.approx(cosine(1.0, steps=10)(step))
        d = opt.d
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
        sched.step()
        assert opt.effective_lr() == lr * d


def test_fit_records_the_effective_lr() -> None:
    task = get("logreg-digits")
    h = fit(task, "prodigy", epochs=1, progress=False)
    assert h.lrs[0] == 1e-6  # lr 1.0 times d0 on the first step
    assert max(h.lrs) > 1e-4 and all(b >= a for a, b in zip(h.lrs, h.lrs[1:], strict=False))
    assert h.epochs[0]["lr"] == h.lrs[-1]
    h = fit(task, "dog", epochs=1, progress=False)
    assert len(set(h.lrs)) > 10 and max(h.lrs) < 1.0
    assert fit(task, "adam", epochs=1, lr=3e-3, progress=False).lrs == [3e-3] * h.steps


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: DoG(p, lr=0.0), r"DoG: `lr` must be a finite number in \(0, inf\), got lr=0.0"),
        (lambda p: DoG(p, lr=-1.0), "got lr=-1.0"),
        (lambda p: DoG(p, reps_rel=0.0), "`reps_rel` must be .*got reps_rel=0.0"),
        (lambda p: DoG(p, weight_decay=-1.0, layer_wise=True), "LDoG: `weight_decay` .*weight_decay=-1.0"),
        (lambda p: Prodigy(p, lr=math.inf), r"Prodigy: `lr` must be a finite number in \(0, inf\)"),
        (lambda p: Prodigy(p, d0=0.0), r"`d0` must be a finite number in \(0, inf\), got d0=0.0"),
        (lambda p: Prodigy(p, betas=(0.9, 1.0)), r"`betas\[1\]` must be .* \[0, 1\), got betas\[1\]=1.0"),
        (lambda p: Prodigy(p, betas=0.9), "`betas` must be a pair"),
        (lambda p: Prodigy(p, eps=-1e-8), "got eps=-1e-08"),
    ],
)
def test_bad_arguments_name_argument_and_value(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(torch.nn.Linear(2, 1).parameters())  # type: ignore[operator]
