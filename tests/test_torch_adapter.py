"""The PyTorch binding beyond the contract table: groups, momentum, counting applied steps,
plateau control, tensor LRs under torch.compile, and resume checks."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lrkit.adapters.torch import ScheduleLR
from lrkit.schedules import HorizonError, cosine, onecycle, parse, plateau, warmup


def _params(n: int = 2) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.randn(3)) for _ in range(n)]


def test_is_a_torch_lr_scheduler_and_constructor_only_sets_step0_lr() -> None:
    p = _params(1)
    before = p[0].detach().clone()
    opt = torch.optim.SGD(p, lr=1.0, momentum=0.9)
    sched = ScheduleLR(opt, "warmup(10) >> cosine(0.1, steps=90)")
    assert isinstance(sched, LRScheduler)  # what Lightning checks
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 11)
    assert opt.state_dict()["state"] == {}  # the optimizer was not stepped
    assert torch.equal(p[0].detach(), before)
    assert "initial_lr" not in opt.param_groups[0]
    assert sched.get_last_lr() == [opt.param_groups[0]["lr"]]
    assert sched.last_epoch == 0


def test_group_scales_keep_ratios_and_groups_added_later_are_scheduled() -> None:
    a, b, c = _params(3)
    opt = torch.optim.SGD([{"params": [a], "lr": 0.01}, {"params": [b]}], lr=0.1)
    s = cosine(1.0, steps=100)
    sched = ScheduleLR(opt, s)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * s(10))
    assert opt.param_groups[1]["lr"] == pytest.approx(s(10))
    opt.add_param_group({"params": [c], "lr": 0.05})  # unfrozen later: half the default
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * s(11), s(11), 0.5 * s(11)])
    state = sched.state_dict()
    assert state["scales"] == pytest.approx([0.1, 1.0, 0.5])


def test_explicit_scales_and_lr_scale_key() -> None:
    a, b = _params(2)
    opt = torch.optim.SGD([{"params": [a], "lr_scale": 0.25}, {"params": [b]}], lr=0.1)
    ScheduleLR(opt, "constant(0.2)")
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.2])
    opt2 = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    ScheduleLR(opt2, "constant(0.2)", scales=[1.0, 3.0])
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx([0.2, 0.6])
    with pytest.raises(ValueError, match="one value per param group"):
        ScheduleLR(opt2, "constant(0.2)", scales=[1.0])


def test_onecycle_cycles_adam_beta1_and_sgd_momentum() -> None:
    s = onecycle(0.01, steps=100)
    adam = torch.optim.Adam(_params(), lr=0.01, betas=(0.9, 0.999))
    sched = ScheduleLR(adam, s)
    seen = []
    for _ in range(100):
        seen.append(adam.param_groups[0]["betas"])
        adam.step()
        sched.step()
    np.testing.assert_allclose([b[0] for b in seen], s.momentum(np.arange(100)), rtol=0, atol=0)
    assert {b[1] for b in seen} == {0.999}
    with pytest.raises(ValueError, match="neither 'momentum' nor 'betas'"):
        ScheduleLR(torch.optim.Adagrad(_params(), lr=0.1), s)
    ScheduleLR(torch.optim.Adagrad(_params(), lr=0.1), onecycle(0.01, steps=100, momentum_range=None))


def test_warmup_then_onecycle_holds_the_momentum_and_rmsprop_trains() -> None:
    # RMSprop is built with momentum 0 (its default) and keeps no momentum buffer for it: the
    # warmup must already write the momentum that the one-cycle starts with
    torch.manual_seed(0)
    s = warmup(10) >> onecycle(0.01, steps=100)
    p = _params(1)
    opt = torch.optim.RMSprop(p, lr=0.01)
    sched = ScheduleLR(opt, s)
    seen = []
    for _ in range(120):
        seen.append(opt.param_groups[0]["momentum"])
        (p[0] ** 2).sum().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    np.testing.assert_array_equal(seen, s.momentum(np.arange(120)))
    assert seen[:11] == [0.95] * 11  # held through the warmup, no jump at the hand-over
    assert torch.isfinite(p[0]).all()
    sgd = torch.optim.SGD(_params(1), lr=0.01, momentum=0.5)
    ScheduleLR(sgd, s)
    assert sgd.param_groups[0]["momentum"] == 0.95  # not the 0.5 it was built with


def test_gradient_accumulation_does_not_advance_the_schedule() -> None:
    torch.manual_seed(0)
    p = _params(1)
    opt = torch.optim.SGD(p, lr=0.1)
    s = cosine(0.1, steps=50)
    sched = ScheduleLR(opt, s)
    used = []
    for micro in range(40):  # 4 micro-batches per optimizer step; scheduler stepped every micro-batch
        (p[0] ** 2).sum().backward()
        if micro % 4 == 3:
            used.append(opt.param_groups[0]["lr"])
            opt.step()
            opt.zero_grad()
        sched.step()
    assert sched.last_epoch == 10
    np.testing.assert_array_equal(used, s(np.arange(10)))


def test_step_skipped_by_grad_scaler_does_not_advance_the_schedule() -> None:
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    s = cosine(0.1, steps=20)
    sched = ScheduleLR(opt, s)
    applied_lrs = []
    for i in range(12):
        loss = (p * (float("inf") if i in (3, 7, 8) else 1.0)).sum()
        scaler.scale(loss).backward()
        lr_before = opt.param_groups[0]["lr"]
        before = p.detach().clone()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        if not torch.equal(before, p.detach()):
            applied_lrs.append(lr_before)
        sched.step()
    assert len(applied_lrs) == 9
    assert sched.last_epoch == 9
    np.testing.assert_array_equal(applied_lrs, s(np.arange(9)))


def test_count_calls_mode_follows_calls() -> None:
    opt = torch.optim.SGD(_params(), lr=0.1)
    sched = ScheduleLR(opt, "exponential(0.1, factor=0.5)", count="calls")
    for _ in range(3):
        sched.step()  # no optimizer.step(): previewing a schedule, for example
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_step_with_an_epoch_is_refused() -> None:
    sched = ScheduleLR(torch.optim.SGD(_params(), lr=0.1), "constant(0.1)")
    with pytest.raises(TypeError, match="takes no epoch"):
        sched.step(5)  # type: ignore[arg-type]


INF = float("inf")


@pytest.mark.parametrize(
    ("kwargs", "metrics_seed", "diverged"),
    [
        ({"factor": 0.5, "patience": 2}, 0, {}),
        ({"factor": 0.3, "patience": 0, "cooldown": 2}, 1, {}),
        ({"factor": 0.5, "patience": 1, "threshold": 0.05, "threshold_mode": "abs"}, 2, {}),
        ({"factor": 0.5, "patience": 1, "mode": "max", "min_lr": 0.01}, 3, {}),
        # diverged losses (inf) from the first report on, and later
        ({"factor": 0.5, "patience": 1}, 4, {0: INF, 1: INF, 2: INF, 3: INF, 30: INF, 31: INF}),
        ({"factor": 0.5, "patience": 1, "mode": "max"}, 5, {0: -INF, 1: -INF, 2: -INF, 3: -INF, 40: -INF}),
        ({"factor": 0.5, "patience": 1, "threshold_mode": "abs"}, 6, {0: INF, 1: INF, 2: INF, 20: -INF}),
        ({"factor": 0.5, "patience": 2, "mode": "max", "cooldown": 1}, 7, {5: INF, 9: -INF}),
        ({"factor": 0.5, "patience": 2, "threshold": 1.0}, 8, {0: INF}),  # inf * 0 is NaN: never better
    ],
)
def test_plateau_matches_torch_reduce_on_plateau(kwargs: dict, metrics_seed: int, diverged: dict) -> None:
    rng = random.Random(metrics_seed)
    metrics = [1.0 / (1 + e) ** 0.3 + 0.05 * rng.random() for e in range(60)]
    if kwargs.get("mode") == "max":
        metrics = [-m for m in metrics]
    for epoch, value in diverged.items():
        metrics[epoch] = value
    opt_t = torch.optim.SGD(_params(), lr=0.1)
    ref = ReduceLROnPlateau(opt_t, **kwargs)
    opt = torch.optim.SGD(_params(), lr=0.1)
    sched = ScheduleLR(opt, plateau(0.1, **kwargs))
    for m in metrics:
        for _ in range(5):  # five optimizer steps an epoch
            opt_t.step()
            opt.step()
            sched.step()
        ref.step(m)
        sched.report(m)
        assert opt.param_groups[0]["lr"] == pytest.approx(opt_t.param_groups[0]["lr"], rel=1e-12)
    assert len(sched.schedule.reductions) >= 2  # the metric curve does trigger reductions
    # the state, an infinite best included, is plain JSON and resumes to the same decisions
    state = json.loads(json.dumps(sched.state_dict(), allow_nan=False))
    resumed = ScheduleLR(torch.optim.SGD(_params(), lr=0.1), plateau(0.1, **kwargs))
    resumed.load_state_dict(state)
    assert resumed.schedule == sched.schedule
    for m in (1e-3, INF, -INF, 5.0, 5.0, 5.0):
        ref.step(m)
        resumed.report(m)
        assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(
            opt_t.param_groups[0]["lr"], rel=1e-12
        )


def test_plateau_reduces_after_patience_and_not_before() -> None:
    opt = torch.optim.SGD(_params(), lr=0.1)
    sched = ScheduleLR(opt, "plateau(0.1, factor=0.5, patience=3)")
    assert sched.report(1.0) is False  # baseline
    assert [sched.report(1.0) for _ in range(3)] == [False, False, False]  # three bad epochs: tolerated
    assert opt.param_groups[0]["lr"] == 0.1
    assert sched.report(1.0) is True  # the fourth is one too many
    assert opt.param_groups[0]["lr"] == 0.05


def test_warmup_then_plateau_composes_and_resumes() -> None:
    s = warmup(20) >> plateau(0.1, factor=0.5, patience=1)
    opt = torch.optim.SGD(_params(), lr=0.1)
    sched = ScheduleLR(opt, s)
    lrs = []
    for epoch in range(12):
        for _ in range(10):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        sched.report(1.0 if epoch < 1 else 2.0)  # never improves after the first epoch
    # warmup ramps over the first 20 steps, metrics reported during it are ignored
    np.testing.assert_allclose(lrs[:20], 0.1 * (np.arange(20) + 1) / 21)
    assert lrs[20] == 0.1
    assert min(lrs) < 0.1 * 0.5**3
    # the state is plain data and a fresh scheduler resumes exactly
    state = json.loads(json.dumps(sched.state_dict()))
    opt2 = torch.optim.SGD(_params(), lr=0.1)
    sched2 = ScheduleLR(opt2, s)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert sched2.schedule == sched.schedule


def test_report_without_plateau_is_an_error() -> None:
    sched = ScheduleLR(torch.optim.SGD(_params(), lr=0.1), "cosine(0.1, steps=10)")
    with pytest.raises(ValueError, match="no plateau"):
        sched.report(1.0)


def test_load_state_dict_refuses_a_changed_schedule_unless_told() -> None:
    opt = torch.optim.SGD(_params(), lr=0.1)
    sched = ScheduleLR(opt, "cosine(0.1, steps=100)")
    for _ in range(30):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD(_params(), lr=0.1)
    longer = ScheduleLR(opt2, "cosine(0.1, steps=200)")
    with pytest.raises(ValueError, match="silently shift"):
        longer.load_state_dict(state)
    longer.load_state_dict(state, schedule="current")
    assert opt2.param_groups[0]["lr"] == pytest.approx(cosine(0.1, steps=200)(30))
    longer.load_state_dict(state, schedule="saved")
    assert opt2.param_groups[0]["lr"] == pytest.approx(cosine(0.1, steps=100)(30))
    with pytest.raises(ValueError, match="format"):
        longer.load_state_dict({"step": 3})


def test_horizon_error_policy_stops_a_run_that_is_too_long() -> None:
    opt = torch.optim.SGD(_params(), lr=0.1)
    sched = ScheduleLR(opt, 'horizon(cosine(0.1, steps=5), steps=5, after="error")')
    for _ in range(5):
        opt.step()
        sched.step()
    opt.step()
    with pytest.raises(HorizonError, match="past the end"):
        sched.step()


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        ScheduleLR("sgd", "constant(0.1)")  # type: ignore[arg-type]
    opt = torch.optim.SGD(_params(), lr=0.1)
    with pytest.raises(TypeError, match="`schedule` must be"):
        ScheduleLR(opt, 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid schedule spec"):
        ScheduleLR(opt, "cosin(0.1)")
    with pytest.raises(ValueError, match="count"):
        ScheduleLR(opt, "constant(0.1)", count="epochs")  # type: ignore[arg-type]


def test_tensor_lr_is_updated_in_place_and_compiled_step_does_not_recompile() -> None:
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(
        model.parameters(), lr=torch.tensor(0.01), betas=(torch.tensor(0.9), torch.tensor(0.999))
    )
    lr_tensor = opt.param_groups[0]["lr"]
    sched = ScheduleLR(opt, onecycle(0.01, steps=300))
    counter = CompileCounter()

    @torch.compile(backend=counter)
    def opt_step() -> None:
        opt.step()

    x, y = torch.randn(16, 4), torch.randn(16, 1)
    lrs = []
    for _ in range(250):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt_step()
        opt.zero_grad()
        sched.step()
        lrs.append(float(opt.param_groups[0]["lr"]))
    assert opt.param_groups[0]["lr"] is lr_tensor  # same tensor, updated in place
    assert len(set(lrs)) > 200  # the LR did change every step
    assert sched.last_epoch == 250  # the compiled step was counted
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} compilations"
    np.testing.assert_allclose(lrs, onecycle(0.01, steps=300)(np.arange(1, 251)), rtol=1e-6)


def test_parse_used_for_spec_strings() -> None:
    opt = torch.optim.SGD(_params(), lr=0.1)
    sched = ScheduleLR(opt, parse("warmup(5) >> cosine(0.1, steps=10)").to_config())
    assert sched.schedule == parse("warmup(5) >> cosine(0.1, steps=10)")


@pytest.mark.parametrize(
    "corrupt",
    [
        {"step": -1},
        {"step": "7"},
        {"schedule": {"type": "cosine", "lr": 0.1}},
        {"schedule": {"type": "nope"}},
        {"scales": "1.0"},
        {"count": "epochs"},
    ],
)
def test_a_bad_state_dict_is_refused_and_changes_nothing(corrupt: dict) -> None:
    opt = torch.optim.SGD(_params(), lr=0.1)
    sched = ScheduleLR(opt, "cosine(0.1, steps=100)")
    for _ in range(7):
        opt.step()
        sched.step()
    good = sched.state_dict()
    before = (sched.state_dict(), opt.param_groups[0]["lr"])
    with pytest.raises(ValueError, match=r"ScheduleLR\.load_state_dict"):
        sched.load_state_dict({**good, **corrupt})
    assert (sched.state_dict(), opt.param_groups[0]["lr"]) == before


def test_the_position_cannot_be_set_and_the_error_says_what_to_do_instead() -> None:
    """torch's SequentialLR moves its children by writing `last_epoch`: ScheduleLR counts the
    optimizer's steps itself, and says to compose the schedules instead."""
    opt = torch.optim.SGD(_params(), lr=0.1)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)
    sched = ScheduleLR(opt, "cosine(0.1, steps=50)")
    advice = r"read-only.*load_state_dict.*warmup\(500\) >> cosine.*SequentialLR"
    with pytest.raises(AttributeError, match=advice):
        torch.optim.lr_scheduler.SequentialLR(opt, [warm, sched], milestones=[5])
    with pytest.raises(AttributeError, match="read-only"):
        sched.last_epoch = 3
    assert sched.last_epoch == 0


def test_groups_sharing_a_tensor_lr_each_get_their_own_lr() -> None:
    """torch gives every group without an LR of its own the optimizer's default object; with a
    tensor LR, writing one group's LR into it in place wrote it into every group."""
    a, b, c, d = _params(4)
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b]}], lr=torch.tensor(1e-3))
    lr0 = opt.param_groups[0]["lr"]
    s = cosine(1e-3, steps=10)
    sched = ScheduleLR(opt, s, scales=[1.0, 0.1])
    assert [float(g["lr"]) for g in opt.param_groups] == pytest.approx([1e-3, 1e-4])
    assert [float(x) for x in sched.get_last_lr()] == pytest.approx([1e-3, 1e-4])
    assert opt.param_groups[0]["lr"] is lr0  # the first group keeps the user's tensor
    for _ in range(3):
        opt.step()
        sched.step()
    # the optimizer's default is still the LR it was built with, for the groups added later
    assert float(opt.defaults["lr"]) == pytest.approx(1e-3)
    opt.add_param_group({"params": [c]})  # takes the default: scale 1
    opt.add_param_group({"params": [d], "lr": 1e-4})  # a tenth of the default
    opt.step()
    sched.step()
    assert [float(g["lr"]) for g in opt.param_groups] == pytest.approx([s(4), 0.1 * s(4), s(4), 0.1 * s(4)])
    assert sched.state_dict()["scales"] == pytest.approx([1.0, 0.1, 1.0, 0.1])
    assert len({id(g["lr"]) for g in opt.param_groups} | {id(opt.defaults["lr"])}) == 5


def test_a_checkpoint_with_fewer_groups_keeps_the_scales_of_the_others() -> None:
    a, b = _params(2)
    spec = "warmup(10) >> cosine(0.1, steps=90)"
    opt = torch.optim.SGD([a], lr=0.1)
    sched = ScheduleLR(opt, spec)
    for _ in range(5):
        opt.step()
        sched.step()
    saved = sched.state_dict()
    opt2 = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1)
    sched2 = ScheduleLR(opt2, spec)
    sched2.load_state_dict(saved)
    opt2.step()
    sched2.step()
    lr = parse(spec)(6)
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx([lr, 0.5 * lr])
    assert sched2.state_dict()["scales"] == pytest.approx([1.0, 0.5])


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "x", None])
def test_a_bad_scale_is_refused_wherever_it_comes_from(bad: object) -> None:
    a, b = _params(2)
    with pytest.raises(ValueError, match=r"scales\[1\] must be a finite number >= 0"):
        ScheduleLR(torch.optim.SGD([a, b], lr=0.1), "constant(0.1)", scales=[1.0, bad])  # type: ignore[list-item]
    opt = torch.optim.SGD([{"params": [a], "lr_scale": bad}], lr=0.1)
    with pytest.raises(ValueError, match=r"param group 0's 'lr_scale' must be a finite number >= 0"):
        ScheduleLR(opt, "constant(0.1)")
    opt = torch.optim.SGD([a], lr=0.1)
    sched = ScheduleLR(opt, "constant(0.1)")
    with pytest.raises(ValueError, match=r"load_state_dict: scales\[0\] must be"):
        sched.load_state_dict({**sched.state_dict(), "scales": [bad]})
    assert opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="`scales` must be a list of numbers"):
        ScheduleLR(opt, "constant(0.1)", scales=0.5)  # type: ignore[arg-type]


def test_a_copy_or_pickle_of_optimizer_and_scheduler_counts_its_own_steps(tmp_path) -> None:
    import copy

    p = _params(1)
    opt = torch.optim.SGD(p, lr=0.1)
    sched = ScheduleLR(opt, "cosine(0.1, steps=20)")
    opt.step()
    sched.step()
    opt2, sched2 = copy.deepcopy((opt, sched))
    torch.save((opt, sched), tmp_path / "both.pt")
    opt3, sched3 = torch.load(tmp_path / "both.pt", weights_only=False)
    for o, s in ((opt, sched), (opt2, sched2), (opt3, sched3)):
        for _ in range(3):
            o.step()
            s.step()
    assert sched.last_epoch == sched2.last_epoch == sched3.last_epoch == 4
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"] == opt3.param_groups[0]["lr"]
    assert sched2.optimizer is opt2
    sched.close()
    closed = copy.deepcopy((opt, sched))
    closed[0].step()
    closed[1].step()
    assert closed[1].last_epoch == 4  # a closed scheduler's copy stays closed


def test_a_second_scheduler_scales_groups_by_their_base_lr_not_their_current_one() -> None:
    """A second phase on the same optimizer, and an optimizer a torch scheduler has moved: the
    scale comes from the group's base LR (its 'lr_scale', or torch's 'initial_lr')."""
    p = _params(1)
    opt = torch.optim.SGD(p, lr=0.1)
    first = ScheduleLR(opt, "cosine(0.1, steps=10)")
    for _ in range(10):
        opt.step()
        first.step()
    assert opt.param_groups[0]["lr"] == 0.0 and opt.param_groups[0]["lr_scale"] == 1.0
    first.close()
    ScheduleLR(opt, "constant(0.01)")
    assert opt.param_groups[0]["lr"] == 0.01  # not 0: the first phase ended at LR 0
    # a checkpoint of an optimizer under torch's StepLR: its LR is a tenth of its initial_lr
    opt = torch.optim.SGD(_params(1), lr=0.1)
    step_lr = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.1)
    for _ in range(6):
        opt.step()
        step_lr.step()
    saved = opt.state_dict()
    opt2 = torch.optim.SGD(_params(1), lr=0.1)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01)
    sched = ScheduleLR(opt2, "cosine(0.1, steps=100)")
    assert opt2.param_groups[0]["lr"] == 0.1 and sched.state_dict()["scales"] == [1.0]
    # explicit scales win over a group's lr_scale
    ScheduleLR(opt2, "constant(0.1)", scales=[0.5])
    assert opt2.param_groups[0]["lr"] == 0.05 and opt2.param_groups[0]["lr_scale"] == 0.5


def test_an_lr_written_by_another_scheduler_is_said_once() -> None:
    p = _params(1)
    opt = torch.optim.SGD(p, lr=0.1)
    sched = ScheduleLR(opt, "constant(0.1)")
    plateau_lr = ReduceLROnPlateau(opt, factor=0.5, patience=0)
    with pytest.warns(UserWarning, match=r"param group 0's LR was changed outside this scheduler \(to 0.05"):
        for _ in range(3):
            opt.step()
            plateau_lr.step(1.0)
            sched.step()
    assert opt.param_groups[0]["lr"] == 0.1  # overwritten, as the warning says


def test_a_schedule_in_epochs_stepped_per_epoch_is_said() -> None:
    """Eight optimizer steps per epoch, step() once per epoch, a one-cycle written in epochs."""
    opt = torch.optim.SGD(_params(1), lr=0.1, momentum=0.9)
    sched = ScheduleLR(opt, onecycle(0.1, steps=5))
    with pytest.warns(UserWarning, match=r"one call of step\(\) advanced 8 optimizer steps, 160% of"):
        for _ in range(8):
            opt.step()
        sched.step()
    counted = ScheduleLR(
        torch.optim.SGD(_params(1), lr=0.1, momentum=0.9), onecycle(0.1, steps=5), count="calls"
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counted.optimizer.step()
        counted.step()  # one call, one position: nothing to say


def test_resuming_an_optimizer_and_its_scheduler_says_nothing() -> None:
    import warnings

    spec = "warmup(10) >> cosine(0.1, steps=90)"
    opt = torch.optim.SGD(_params(1), lr=0.1, momentum=0.9)
    sched = ScheduleLR(opt, spec)
    for _ in range(15):
        opt.step()
        sched.step()
    saved = (opt.state_dict(), sched.state_dict())
    opt2 = torch.optim.SGD(_params(1), lr=0.1, momentum=0.9)
    sched2 = ScheduleLR(opt2, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt2.load_state_dict(saved[0])
        sched2.load_state_dict(saved[1])
        for _ in range(5):
            opt2.step()
            sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(parse(spec)(20))
