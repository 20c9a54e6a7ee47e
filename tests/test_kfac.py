"""K-FAC: factors against per-example gradients, the damped step against Gauss-Newton, speed
against tuned SGD, update intervals, KL clipping, fallback layers, and argument errors."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from lrkit import find_lr
from lrkit.adapters.torch import ScheduleLR
from lrkit.optim import KFAC, KFACPreconditioner
from lrkit.optim._kfac_optimizer import sgd_step
from lrkit.schedules import constant, cosine


def _aug(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)


def test_factors_equal_those_of_explicit_per_example_gradients() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    precond = KFACPreconditioner(net, factor_decay=0.5)
    nn.functional.cross_entropy(net(x), y).backward()
    precond.step()

    inputs = {"0": x, "2": torch.tanh(net[0](x)).detach()}
    for name, layer in (("0", net[0]), ("2", net[2])):
        a_rows, g_rows = [], []
        for i in range(len(x)):
            net.zero_grad()
            nn.functional.cross_entropy(net(x[i : i + 1]), y[i : i + 1]).backward()
            g_i = layer.bias.grad.clone()  # example i's gradient w.r.t. the layer's outputs
            a_i = _aug(inputs[name][i : i + 1])[0]
            # the per-example weight gradient is the outer product the factors are built from
            torch.testing.assert_close(layer.weight.grad, torch.outer(g_i, a_i[:-1]))
            a_rows.append(a_i)
            g_rows.append(g_i)
        a, g = torch.stack(a_rows), torch.stack(g_rows)
        f = precond.layers[name].factors
        torch.testing.assert_close(f["A"], a.T @ a / len(x))
        torch.testing.assert_close(f["G"], g.T @ g / len(x))


def test_conv_1x1_and_embedding_match_the_equivalent_linear_layer() -> None:
    torch.manual_seed(1)
    conv, lin = nn.Conv2d(2, 3, 1).double(), nn.Linear(2, 3).double()
    lin.weight.data.copy_(conv.weight.data[:, :, 0, 0])
    lin.bias.data.copy_(conv.bias.data)
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    pc, pl = KFACPreconditioner(conv), KFACPreconditioner(lin)
    conv(x).pow(2).mean().backward()
    # per pixel the 1x1 conv is the linear layer; the 9 pixels share its weights
    lin(x.permute(0, 2, 3, 1)).pow(2).mean().backward()
    pc.step()
    pl.step()
    torch.testing.assert_close(pc.layers[""].factors["A"], pl.layers[""].factors["A"])
    torch.testing.assert_close(pc.layers[""].factors["G"], pl.layers[""].factors["G"])
    torch.testing.assert_close(conv.weight.grad[:, :, 0, 0], lin.weight.grad)

    emb, onehot = nn.Embedding(5, 3).double(), nn.Linear(5, 3, bias=False).double()
    onehot.weight.data.copy_(emb.weight.data.T)
    idx = torch.tensor([[0, 2, 2], [4, 2, 1]])
    pe, po = KFACPreconditioner(emb), KFACPreconditioner(onehot)
    emb(idx).sin().sum().backward()
    onehot(nn.functional.one_hot(idx, 5).double()).sin().sum().backward()
    pe.step()
    po.step()
    torch.testing.assert_close(torch.diag(pe.layers[""].factors["A"]), po.layers[""].factors["A"])
    torch.testing.assert_close(emb.weight.grad, onehot.weight.grad.T)


def test_damped_step_is_the_gauss_newton_step_on_least_squares() -> None:
    """Residuals of equal size make the empirical Fisher equal the Gauss-Newton matrix exactly."""
    torch.manual_seed(2)
    n, damping = 12, 0.05
    model = nn.Linear(3, 1).double()
    x = torch.randn(n, 3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.2], dtype=torch.float64)
    signs = torch.where(torch.arange(n) % 3 == 0, 1.0, -1.0).double()
    target = (model(x)[:, 0] + signs).detach()  # every residual is +-1
    precond = KFACPreconditioner(model, damping=damping)
    loss = 0.5 * nn.functional.mse_loss(model(x)[:, 0], target)
    loss.backward()
    grad = torch.cat([model.weight.grad[0], model.bias.grad]).clone()
    precond.step()

    j = _aug(x)  # the Jacobian of the outputs w.r.t. (weight, bias)
    gauss_newton = j.T @ j / n
    expected = torch.linalg.solve(gauss_newton + damping * torch.eye(4, dtype=torch.float64), grad)
    got = torch.cat([model.weight.grad[0], model.bias.grad])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(got, grad)


def _steps_to(make: object, target: float, cap: int = 200) -> int:
    g = torch.Generator().manual_seed(0)
    scale = torch.logspace(0, 2, 10)  # features from 1 to 100: ill-conditioned for SGD
    x = torch.randn(256, 10, generator=g) * scale
    y = (x @ (torch.randn(10, 3, generator=g) / scale[:, None])).argmax(1)
    model = nn.Linear(10, 3)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    opt = make(model)  # type: ignore[operator]
    for t in range(cap):
        loss = nn.functional.cross_entropy(model(x), y)
        value = loss.item()
        if not math.isfinite(value):
            return cap
        if value < target:
            return t
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cap


def test_kfac_needs_far_fewer_steps_than_sgd_at_its_best_grid_lr() -> None:
    kfac = _steps_to(lambda m: KFAC(m, lr=0.3, kl_clip=None, damping=1e-3), 0.2)
    assert kfac <= 10
    # SGD with momentum at every LR of a log grid takes more than 5x as many steps (the best, 3e-3,
    # takes about 110); capping its runs there keeps the test fast
    grid = [10.0 ** (-4 + 0.5 * k) for k in range(9)]  # 1e-4 .. 1
    sgd = min(
        _steps_to(lambda m, lr=lr: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9), 0.2, cap=5 * kfac)
        for lr in grid
    )
    assert sgd == 5 * kfac, (kfac, sgd)


def test_intervals_and_hooks_only_record_due_steps() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    precond = KFACPreconditioner(model, factor_update=constant(3), inverse_update=2, factor_decay=0.5)
    layer = precond.layers["0"]
    factor_changes, inverse_changes = [], []
    for step in range(7):
        assert precond.collecting == (step % 3 == 0)
        model(torch.randn(4, 2)).sum().backward()
        assert bool(layer.inputs) == (step % 3 == 0)  # nothing recorded on the other steps
        before = {k: None if v is None else v.clone() for k, v in layer.factors.items()}
        precond.step()
        model.zero_grad()
        if before["A"] is None or not torch.equal(before["A"], layer.factors["A"]):
            factor_changes.append(step)
        if before["qa"] is None or not torch.equal(before["qa"], layer.factors["qa"]):
            inverse_changes.append(step)
    assert factor_changes == [0, 3, 6]
    assert inverse_changes == [0, 4, 6]  # due at 0, 2, 4, 6; at 2 the factors had not changed
    with torch.no_grad():
        model(torch.randn(4, 2))
    assert not layer.inputs  # no recording without gradients


def test_kl_clip_reads_the_lr_from_the_optimizer() -> None:
    torch.manual_seed(4)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    precond = KFACPreconditioner(model, opt, kl_clip=1e-3)
    x = torch.randn(8, 3)
    nus = []
    for lr in (0.1, 100.0):
        opt.param_groups[0]["lr"] = lr
        model.zero_grad()
        model(x).pow(2).mean().backward()
        d = torch.cat([model.weight.grad, model.bias.grad[:, None]], dim=1).clone()
        precond.step()
        v = torch.cat([model.weight.grad, model.bias.grad[:, None]], dim=1) / precond.last_nu
        vg = lr**2 * float((v * d).sum())
        assert precond.last_nu == pytest.approx(min(1.0, math.sqrt(1e-3 / vg)))
        nus.append(precond.last_nu)
    assert nus[1] < nus[0] and nus[1] < 1.0


def test_unsupported_layers_keep_the_plain_gradient_with_one_warning() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    with pytest.warns(UserWarning, match=r"1 module\(s\) cannot be preconditioned.*1 \(BatchNorm1d\)"):
        opt = KFAC(model, lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 3)).pow(2).mean().backward()
            plain = model[1].weight.grad.clone(), model[0].weight.grad.clone()
            opt.preconditioner.step()
            assert torch.equal(model[1].weight.grad, plain[0])
            assert not torch.equal(model[0].weight.grad, plain[1])
    assert sorted(opt.preconditioner.layers) == ["0", "2"]


def test_the_sgd_step_is_torchs_and_a_schedule_advances_once_per_step() -> None:
    torch.manual_seed(6)
    for nesterov, wd in ((False, 0.0), (True, 1e-2)):
        ours, theirs = torch.randn(5), None
        ref = ours.clone().requires_grad_()
        opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=wd)
        bufs: list[torch.Tensor | None] = [None]
        for _ in range(4):
            g = torch.randn(5)
            bufs = sgd_step([ours], [g], bufs, lr=0.1, momentum=0.9, weight_decay=wd, nesterov=nesterov)
            ref.grad = g.clone()
            opt.step()
            theirs = ref.detach()
        assert torch.equal(ours, theirs)
    # a plain SGD exists (torch hooks its step); KFAC's step must still count once
    model = nn.Linear(3, 1)
    opt = KFAC(model, lr=0.1)
    sched = ScheduleLR(opt, cosine(0.1, steps=10))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(cosine(0.1, steps=10)(3))


def test_preconditioner_under_adam_resumes_bit_for_bit() -> None:
    def build() -> tuple[nn.Module, torch.optim.Optimizer, KFACPreconditioner]:
        torch.manual_seed(7)
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return model, opt, KFACPreconditioner(model, opt, factor_update=2, inverse_update=3, kl_clip=1e-2)

    def run(model: nn.Module, opt: torch.optim.Optimizer, pre: KFACPreconditioner, steps: range) -> None:
        for s in steps:
            g = torch.Generator().manual_seed(s)
            opt.zero_grad()
            model(torch.randn(6, 1, 4, 4, generator=g)).pow(2).mean().backward()
            pre.step()
            opt.step()

    model, opt, pre = build()
    run(model, opt, pre, range(5))
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), pre.state_dict()))
    run(model, opt, pre, range(5, 12))
    model2, opt2, pre2 = build()
    model2.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    pre2.load_state_dict(saved[2])
    run(model2, opt2, pre2, range(5, 12))
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert pre2.steps == 12 and pre2.next_inverse == 12


def test_mixed_precision_activations_give_float32_factors() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = KFAC(model, lr=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(8, 3)).float().pow(2).mean()
    loss.backward()
    opt.step()
    assert opt.preconditioner.layers["0"].factors["A"].dtype == torch.float32
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"damping": -1e-3}, r"`damping` must be a finite number in \(0, inf\), got damping=-0.001"),
        ({"damping": 0.0}, "got damping=0.0"),
        ({"factor_decay": 1.0}, r"`factor_decay` must be a finite number in \[0, 1\), got factor_decay=1.0"),
        ({"factor_update": 0}, "`factor_update` must be an int >= 1 or an lrkit Schedule.*factor_update=0"),
        ({"inverse_update": 2.5}, "`inverse_update` must be an int >= 1.*inverse_update=2.5"),
        ({"kl_clip": 0.0}, "`kl_clip` must be a finite number in \\(0, inf\\), got kl_clip=0.0"),
        ({"lr": 0.0}, r"KFAC: `lr` must be a finite number in \(0, inf\), got lr=0.0"),
        ({"lr": math.nan}, "got lr=nan"),
        ({"momentum": 1.0}, "`momentum` must be a finite number in \\[0, 1\\), got momentum=1.0"),
        ({"momentum": 0.0, "nesterov": True}, "nesterov=True needs `momentum` > 0, got momentum=0.0"),
    ],
)
def test_bad_arguments_name_argument_and_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KFAC(nn.Linear(2, 1), **kwargs)  # type: ignore[arg-type]


def test_kl_clip_without_an_optimizer_and_a_bad_interval_schedule() -> None:
    with pytest.raises(ValueError, match=r"kl_clip=0\.001 reads the LR from the optimizer"):
        KFACPreconditioner(nn.Linear(2, 1), kl_clip=1e-3)
    model = nn.Linear(2, 1)
    precond = KFACPreconditioner(model, factor_update=constant(0.2))
    model(torch.randn(3, 2)).sum().backward()
    with pytest.raises(ValueError, match=r"the `factor_update` schedule constant\(0.2\) gave 0.2 at step 0"):
        precond.step()
    with pytest.raises(TypeError, match="needs its layers"):
        KFAC(list(model.parameters()))  # type: ignore[arg-type]


def test_a_deep_copy_of_model_and_optimizer_trains_like_the_original() -> None:
    # torch's Optimizer copies only its defaults, state and param groups: a copied KFAC used to
    # lose its preconditioner and fail at its first step
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = KFAC(model, lr=0.05, inverse_update=2)

    def run(model: nn.Module, opt: KFAC, steps: range) -> None:
        for s in steps:
            g = torch.Generator().manual_seed(s)
            opt.zero_grad()
            model(torch.randn(16, 4, generator=g)).pow(2).mean().backward()
            opt.step()

    run(model, opt, range(3))
    model2, opt2 = copy.deepcopy((model, opt))
    assert opt2.preconditioner is not opt.preconditioner and opt2.preconditioner.steps == 3
    run(model, opt, range(3, 8))
    run(model2, opt2, range(3, 8))
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert opt2.effective_lr() == opt.effective_lr()
    # the copy trains its own model: the original's parameters are not the copy's
    assert all(p is not q for p, q in zip(model.parameters(), model2.parameters(), strict=True))


def _natural(a: torch.Tensor, g: torch.Tensor, d: torch.Tensor, damping: float) -> torch.Tensor:
    """``(A (x) G + damping I)^-1 vec(D)`` for an ``out x in`` matrix `D`, solved explicitly."""
    n = a.shape[0] * g.shape[0]
    vec = d.T.reshape(-1)  # columns stacked: (A (x) G) vec(D) = vec(G D A)
    v = torch.linalg.solve(torch.kron(a, g) + damping * torch.eye(n, dtype=d.dtype), vec)
    return v.reshape(a.shape[0], g.shape[0]).T


def test_a_frozen_bias_is_left_out_and_a_bias_trained_alone_is_preconditioned() -> None:
    torch.manual_seed(9)
    damping = 0.05
    x = torch.randn(6, 4, dtype=torch.float64)
    for frozen in ("bias", "weight"):
        model = nn.Linear(4, 3).double()
        getattr(model, frozen).requires_grad_(False)
        trained = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(trained, lr=0.1)  # holds the trained parameter only (BitFit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            precond = KFACPreconditioner(model, opt, damping=damping, kl_clip=1e3)
        assert list(precond.layers) == [""] and precond.skipped == []
        out = model(x)
        out.retain_grad()
        out.sin().mean().backward()
        g = out.grad * len(x)  # each example's own output gradient
        (param,) = trained
        plain = param.grad.clone()
        precond.step()
        if frozen == "bias":  # the weight alone: no column of ones in the input factor
            a, d = x.T @ x / len(x), plain
            got = model.weight.grad
        else:  # the bias alone: its input is the constant 1, so A = [[1]]
            a, d = torch.ones(1, 1, dtype=torch.float64), plain[:, None]
            got = model.bias.grad[:, None]
        torch.testing.assert_close(precond.layers[""].factors["A"], a)
        expected = _natural(a, g.T @ g / len(x), d, damping)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
        assert not torch.allclose(got, d)
        assert getattr(model, frozen).grad is None


def test_a_layer_called_twice_with_different_batch_sizes_gets_the_mean_of_its_calls() -> None:
    cases = [
        (lambda: nn.Linear(4, 2), (8, 4), (2, 4)),
        (lambda: nn.Conv2d(2, 3, 3, padding=1), (5, 2, 4, 4), (2, 2, 4, 4)),
    ]
    for build, shape_a, shape_b in cases:
        torch.manual_seed(10)
        shared = build().double()
        a, b = torch.randn(*shape_a, dtype=torch.float64), torch.randn(*shape_b, dtype=torch.float64)
        first, second = copy.deepcopy(shared), copy.deepcopy(shared)
        ps, p1, p2 = KFACPreconditioner(shared), KFACPreconditioner(first), KFACPreconditioner(second)
        (shared(a).tanh().mean() + shared(b).tanh().mean()).backward()
        (first(a).tanh().mean() + second(b).tanh().mean()).backward()
        for p in (ps, p1, p2):
            p.step()
        for k in ("A", "G"):
            separate = (p1.layers[""].factors[k] + p2.layers[""].factors[k]) / 2
            torch.testing.assert_close(ps.layers[""].factors[k], separate)
    # the case of the report: two calls of a mean loss each give G = 1, and so does their mean
    layer = nn.Linear(4, 1)
    precond = KFACPreconditioner(layer)
    (layer(torch.randn(8, 4)).mean() + layer(torch.randn(2, 4)).mean()).backward()
    precond.step()
    assert precond.layers[""].factors["G"].item() == pytest.approx(1.0)


def test_a_layer_called_with_a_keyword_input_is_recorded() -> None:
    torch.manual_seed(12)
    x = torch.randn(5, 4)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    other = copy.deepcopy(model)
    by_keyword, by_position = KFACPreconditioner(model), KFACPreconditioner(other)
    model[2](input=model[1](model[0](input=x))).pow(2).mean().backward()
    other(x).pow(2).mean().backward()
    by_keyword.step()
    by_position.step()
    for name in ("0", "2"):
        for k in ("A", "G"):
            torch.testing.assert_close(
                by_keyword.layers[name].factors[k], by_position.layers[name].factors[k]
            )
    torch.testing.assert_close(model[0].weight.grad, other[0].weight.grad)


def test_effective_lr_comes_back_with_the_state_dict() -> None:
    torch.manual_seed(13)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = KFAC(model, lr=0.5)

    def run(steps: range) -> None:
        for s in steps:
            g = torch.Generator().manual_seed(s)
            opt.zero_grad()
            model(torch.randn(16, 4, generator=g)).pow(2).mean().backward()
            opt.step()

    run(range(3))
    before = opt.effective_lr()
    assert math.isfinite(before)
    saved = copy.deepcopy(opt.state_dict())
    opt.param_groups[0]["lr"] = 5.0
    run(range(3, 6))
    assert opt.effective_lr() != before
    opt.load_state_dict(copy.deepcopy(saved))
    assert opt.effective_lr() == before
    assert isinstance(saved["last_step"], float)  # plain data
    # the LR range test restores the optimizer from its state dict, and with it the effective LR
    loader = [(torch.randn(16, 4), torch.randn(16, 2)) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the rules' disagreement on a tiny task
        find_lr(model, opt, nn.functional.mse_loss, loader, steps=20)
    assert opt.effective_lr() == before
