"""Behaviour of individual schedules and combinators, validation, and lint."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrkit.schedules import (
    HorizonError,
    ScheduleError,
    Sequence,
    clip,
    constant,
    cosine,
    cyclic,
    exponential,
    from_config,
    horizon,
    inverse_sqrt,
    inverse_time,
    linear,
    lint,
    multistep,
    noise,
    one_minus_sqrt,
    onecycle,
    parse,
    plateau,
    polynomial,
    repeat,
    sgdr,
    step,
    warmup,
    with_momentum,
    wsd,
)
from lrkit.schedules._compose import standard_normal_at

T = np.arange(400)
#: The first draws of `noise(..., seed=7)` at steps 0, 1, 2, 12345 and 2**52.
PINNED_SEED_7 = [
    -0.33135337654655583,
    1.1287781425560253,
    1.8682981244871044,
    0.6538858141135467,
    -1.092791461206382,
]


@pytest.mark.parametrize("kind", ["linear", "cosine", "exponential"])
def test_warmup_meets_the_next_schedule_without_jump_or_overshoot(kind: str) -> None:
    s = warmup(20, kind=kind) >> cosine(0.1, steps=180)
    v = s(T)
    assert v.max() == 0.1 and v[20] == 0.1
    assert np.all(np.diff(v[:21]) > 0)  # strictly rising to the peak
    assert v[0] > 0
    assert v[19] < 0.1


def test_linear_warmup_default_never_trains_at_zero() -> None:
    s = warmup(4) >> constant(1.0)
    np.testing.assert_allclose(s(np.arange(6)), [0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    s0 = warmup(4, start=0.0) >> constant(1.0)
    np.testing.assert_allclose(s0(np.arange(5)), [0.0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ScheduleError, match="`start` must be > 0"):
        warmup(4, kind="exponential", start=0.0)


def test_sequence_uses_relative_time_and_flattens() -> None:
    a, b, c = constant(0.3, steps=5), linear(0.2, 0.0, steps=10), exponential(0.01, factor=0.5)
    s = a >> b >> c
    assert s == a >> (b >> c) and len(s.parts) == 3
    assert s(4) == 0.3 and s(5) == 0.2 and s(10) == pytest.approx(0.1) and s(15) == 0.01
    assert s(16) == 0.005
    with pytest.raises(ScheduleError, match="has no length"):
        _ = c >> a


def test_warmup_in_the_middle_targets_the_next_part() -> None:
    s = constant(0.01, steps=10) >> warmup(5, start=0.1) >> cosine(0.2, steps=100)
    assert s(10) == pytest.approx(0.02)
    assert s(15) == 0.2


def test_sgdr_restarts_on_the_right_steps() -> None:
    s = sgdr(0.1, period=10, mul=2)
    starts = [0, 10, 30, 70, 150, 310]
    for k in starts:
        assert s(k) == 0.1, k
        if k:
            assert s(k - 1) < 0.01
    limited = sgdr(0.1, period=10, mul=2, cycles=2, end=0.001)
    assert limited.duration == 30
    assert limited(29) == pytest.approx(0.001 + 0.099 * (1 + np.cos(np.pi * 19 / 20)) / 2)
    assert limited(30) == 0.001 and limited(10**6) == 0.001
    decayed = sgdr(0.1, period=10, decay=0.5)
    assert decayed(20) == pytest.approx(0.025)


def test_repeat_with_period_multiplier_and_decay() -> None:
    r = repeat(linear(1.0, 0.0, steps=4), mul=2, decay=0.5, cycles=3)
    assert r.duration == 4 + 8 + 16
    assert r(4) == 0.5 and r(8) == pytest.approx(0.25)  # halfway through the 8-step cycle
    assert r(12) == 0.25 and r(100) == 0.0


def test_cyclic_modes() -> None:
    tri = cyclic(0.0, 1.0, half=2)
    np.testing.assert_allclose(tri(np.arange(9)), [0, 0.5, 1, 0.5, 0, 0.5, 1, 0.5, 0])
    tri2 = cyclic(0.0, 1.0, half=2, mode="triangular2")
    assert tri2(2) == 1.0 and tri2(6) == 0.5 and tri2(10) == 0.25
    exp = cyclic(0.0, 1.0, half=2, mode="exp_range", gamma=0.9)
    assert exp(2) == pytest.approx(0.81)
    mom = cyclic(0.001, 0.1, half=2, momentum_range=[0.8, 0.9])
    assert mom.momentum(0) == 0.9 and mom.momentum(2) == 0.8


def test_onecycle_phases_and_momentum() -> None:
    s = onecycle(1.0, steps=100)
    assert s(0) == pytest.approx(1 / 25) and s(29) == 1.0
    assert s(99) == pytest.approx(1 / 25 / 1e4) and s(500) == s(99)
    assert s.momentum(0) == 0.95 and s.momentum(29) == 0.85 and s.momentum(99) == 0.95
    three = onecycle(1.0, steps=100, three_phase=True)
    assert three(58) == pytest.approx(1 / 25)


def test_wsd_decay_kinds_end_at_end() -> None:
    for kind in ("linear", "cosine", "sqrt"):
        s = wsd(0.1, warmup=10, stable=20, decay=30, end=0.001, kind=kind)
        assert s(10) == 0.1 and s(29) == 0.1 and s(60) == pytest.approx(0.001)
        assert s.duration == 60
    sq = wsd(1.0, warmup=0, stable=0, decay=100, kind="sqrt")
    assert sq(25) == pytest.approx(0.5)


def test_inverse_sqrt_matches_the_transformer_formula() -> None:
    s = inverse_sqrt(1.0, warmup=100)
    t = np.arange(100, 1000)
    np.testing.assert_allclose(s(t), np.sqrt(100 / t), rtol=1e-14)


def test_horizon_policies() -> None:
    held = horizon(exponential(1.0, factor=0.5), steps=3)
    assert held(3) == 0.125 and held(1000) == 0.125
    strict = horizon(cosine(0.1, steps=10), steps=10, after="error")
    assert strict(10) == 0.0
    with pytest.raises(HorizonError, match="past the horizon"):
        strict(11)
    with pytest.raises(HorizonError):
        strict(np.arange(20))
    assert (strict >> constant(0.5))(11) == 0.5  # inside a sequence the next part takes over
    tail = constant(0.1, steps=5) >> strict
    assert tail.limit == 16
    with pytest.raises(HorizonError):
        tail(16)


def test_noise_is_deterministic_positive_and_seeded() -> None:
    s = noise(constant(1.0), std=0.1, seed=7)
    v = s(np.arange(20000))
    np.testing.assert_array_equal(v, s(np.arange(20000)))
    assert np.all(v > 0)
    z = np.log(v) / 0.1
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05
    other = noise(constant(1.0), std=0.1, seed=8)(np.arange(20000))
    assert np.corrcoef(np.log(v), np.log(other))[0, 1] < 0.05


def test_noise_draws_are_standard_normal_at_every_step_of_every_seed() -> None:
    # seed 0 used to hash step 0 to 0, a draw of -4.55 sigma (clipped to -3) at every default seed's start
    first = np.array([standard_normal_at(np.arange(5.0), seed) for seed in range(1000)])  # (seed, step)
    assert np.abs(first[:50, 0]).max() < 3.5  # no outlier at step 0 of seeds 0..49
    for z in first.T:  # each of the first steps, over the seeds
        assert abs(z.mean()) < 0.12 and 0.85 < z.var() < 1.15, (z.mean(), z.var())
        assert np.abs(z).max() < 4.5
    assert np.abs(np.corrcoef(first.T)[np.triu_indices(5, 1)]).max() < 0.1  # steps independent
    assert np.abs(standard_normal_at(np.arange(10.0), 0)).max() < 3  # seed 0 starts unremarkably
    s = noise(constant(1.0), std=0.1)
    np.testing.assert_array_equal(s(np.arange(10)), np.exp(0.1 * standard_normal_at(np.arange(10.0), 0)))
    ramp = warmup(5) >> noise(cosine(0.1, steps=95), std=0.3)
    v = ramp(np.arange(10))
    assert v[5] > 0.1 * np.exp(-0.9) * 1.01  # the warmup's target is not a clipped outlier
    assert np.max(v[6:] / v[5:-1]) < 2  # no jump after the hand-over (it was 2.8x)


def test_noise_is_pinned_across_processes_and_platforms() -> None:
    # a counter-based hash on uint64 (no Python hash()): the same draws everywhere, every run
    expected = standard_normal_at(np.array([0.0, 1.0, 2.0, 12345.0, 2.0**52]), 7)
    code = (
        "import json; import numpy as np; from lrkit.schedules._compose import standard_normal_at; "
        "t = np.array([0.0, 1, 2, 12345, 2**52]); print(json.dumps(standard_normal_at(t, 7).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    np.testing.assert_array_equal(np.array(json.loads(out.stdout)), expected)
    np.testing.assert_allclose(expected, PINNED_SEED_7, rtol=1e-12)


def test_clip_and_product_and_affine() -> None:
    c = clip(exponential(1.0, factor=0.5), low=0.1, high=0.6)
    np.testing.assert_allclose(c(np.arange(6)), [0.6, 0.5, 0.25, 0.125, 0.1, 0.1])
    p = cosine(1.0, steps=10) * constant(0.5)
    assert p(0) == 0.5
    a = 2 * (0.5 * cosine(1.0, steps=10) + 0.1)
    assert a.scale == 1.0 and a.shift == pytest.approx(0.2)


def test_with_momentum() -> None:
    s = with_momentum(cosine(0.1, steps=10), linear(0.85, 0.95, steps=10))
    assert s.momentum(10) == 0.95
    assert cosine(0.1, steps=10).momentum(3) is None
    seq = constant(0.1, steps=5) >> onecycle(0.1, steps=100)
    assert seq.momentum(0) == 0.95 and seq.momentum(5) == 0.95  # held, not left to the optimizer


def test_with_momentum_refuses_a_momentum_outside_0_1() -> None:
    with pytest.raises(ScheduleError, match=r"`momentum_schedule` must stay in \[0, 1\), .* 1.5 at step 0"):
        with_momentum(cosine(1e-3, steps=10), 1.5)
    with pytest.raises(ScheduleError, match="is 1 at step 10"):  # an end point
        with_momentum(cosine(1e-3, steps=10), linear(0.9, 1.0, steps=10))
    with pytest.raises(ScheduleError, match=r"is 1\.1 at step 5"):  # a peak inside
        with_momentum(cosine(1e-3, steps=10), linear(0.5, 1.1, steps=5) >> linear(1.1, 0.5, steps=5))
    with pytest.raises(ScheduleError, match="must stay in"):  # grows past 1 after many steps
        with_momentum(cosine(1e-3, steps=10), exponential(0.5, factor=1.001))
    with pytest.raises(ScheduleError, match="must stay in"):
        parse("with_momentum(cosine(1e-3, steps=10), 1.0)")
    ok = with_momentum(cosine(1e-3, steps=10), linear(0.0, 0.99, steps=10))
    assert ok.momentum(0) == 0.0 and ok.momentum(10) == 0.99


def test_parts_without_momentum_hold_the_momentum_of_their_neighbours() -> None:
    one = onecycle(0.1, steps=100)
    s = warmup(10) >> one
    np.testing.assert_array_equal(s.momentum(np.arange(10)), np.full(10, 0.95))  # one(0)'s momentum
    np.testing.assert_array_equal(s.momentum(np.arange(10, 300)), one.momentum(np.arange(290)))
    np.testing.assert_array_equal(s.evaluate_momentum(np.arange(300.0)), s.momentum(np.arange(300)))
    # before the first part with momentum: its first momentum; after one: its last momentum;
    # a warmup: the momentum of the part it warms up to
    mixed = parse(
        "constant(0.01, steps=5) >> with_momentum(constant(0.1, steps=5), linear(0.9, 0.8, steps=5))"
        " >> constant(0.1, steps=5) >> warmup(5) >> with_momentum(constant(0.2), 0.7)"
    )
    expected = [0.9] * 5 + [0.9, 0.88, 0.86, 0.84, 0.82] + [0.8] * 5 + [0.7] * 10
    np.testing.assert_allclose(mixed.momentum(np.arange(25)), expected, rtol=1e-15)
    assert not np.isnan(mixed.momentum(np.arange(1000))).any()
    assert (warmup(5) >> cosine(0.1, steps=10)).momentum(0) is None  # no momentum anywhere


def test_plateau_state_is_plain_data_and_observe_is_pure() -> None:
    p = plateau(0.1, factor=0.5, patience=0)
    p1 = p.observe(0, 1.0)
    p2 = p1.observe(10, 2.0)
    assert p.best is None and p1.best == 1.0  # the original is untouched
    assert p2.reductions == (10,) and p2(9) == 0.1 and p2(10) == 0.05
    cfg = p2.to_config()
    assert cfg["reductions"] == [10] and cfg["best"] == 1.0
    assert from_config(cfg) == p2
    assert p2.fresh() == p
    over = plateau(cosine(0.1, steps=100), factor=0.5, patience=0).observe(0, 1.0).observe(50, 1.0)
    assert over(50) == pytest.approx(0.5 * cosine(0.1, steps=100)(50))
    nan = plateau(0.1, patience=0).observe(0, 1.0).observe(1, float("nan"))
    assert nan.reductions == (1,)  # NaN never improves


@pytest.mark.parametrize(("mode", "diverged"), [("min", float("inf")), ("max", float("-inf"))])
def test_plateau_reduces_when_the_metric_diverges(mode: str, diverged: float) -> None:
    # torch's ReduceLROnPlateau: the best starts at the worst value, which inf does not beat
    p = plateau(0.1, factor=0.5, patience=1, mode=mode)
    for i in range(6):
        p = p.observe(i, diverged)
    assert p.reductions == (1, 3, 5) and p(10) == 0.0125
    assert p.best is None


@pytest.mark.parametrize(("mode", "unbeatable"), [("min", float("-inf")), ("max", float("inf"))])
def test_plateau_with_an_infinite_best_round_trips_as_plain_json(mode: str, unbeatable: float) -> None:
    p = plateau(0.1, factor=0.5, patience=1, mode=mode).observe(0, 1.0).observe(1, unbeatable)
    assert p.best == unbeatable and p.reductions == ()
    p = p.observe(2, -1e300 if mode == "min" else 1e300).observe(3, 0.5)  # nothing beats it
    assert p.reductions == (3,)
    cfg = json.loads(json.dumps(p.to_config(), allow_nan=False))
    assert cfg["best"] == repr(unbeatable)
    assert from_config(cfg) == p and parse(str(p)) == p
    assert from_config(cfg).observe(4, 0.1).observe(5, 0.1).reductions == (3, 5)
    with pytest.raises(ScheduleError, match='`best` must be a number, "inf" or "-inf"'):
        plateau(0.1, best="infinity")
    with pytest.raises(ScheduleError, match="got best=nan"):
        plateau(0.1, best=float("nan"))


def test_plateau_inside_repeat_is_refused() -> None:
    with pytest.raises(ScheduleError, match="cannot be repeated"):
        repeat(plateau(cosine(0.1, steps=10)))


def test_schedules_are_frozen_and_hashable() -> None:
    s = cosine(0.1, steps=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lr = 0.2  # type: ignore[misc]
    assert len({s, cosine(0.1, steps=10), cosine(0.1, steps=11)}) == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: cosine(0.1, steps=0), "cosine: `steps` must be >= 1, got steps=0"),
        (lambda: cosine(0.1, steps=-5.5), "cosine: `steps` must be > 0, got steps=-5.5"),
        (lambda: cosine(float("nan"), steps=5), "cosine: `lr` must be finite, got lr=nan"),
        (lambda: cosine("0.1", steps=5), "cosine: `lr` must be a number, got lr='0.1'"),
        (lambda: step(0.1, every=0), "step: `every` must be >= 1, got every=0"),
        (
            lambda: step(0.1, every=2.5),
            "step: `every` must be a whole number of optimizer steps, got every=2.5",
        ),
        (lambda: step(0.1, every=2**60), "step: `every` must be < 2**53, got every=1152921504606846976"),
        (lambda: cosine(0.1, steps=2.0**53), "cosine: `steps` must be < 2**53, got steps=9007199254740992.0"),
        (lambda: multistep(0.1, ()), "`milestones` must be a non-empty list"),
        (lambda: exponential(0.1, factor=0), "exponential: `factor` must be > 0, got factor=0"),
        (lambda: polynomial(0.1, steps=10, power=-1), "`power` must be > 0, got power=-1"),
        (lambda: sgdr(0.1, period=10, mul=0.5), "sgdr: `mul` must be >= 1, got mul=0.5"),
        (lambda: sgdr(0.1, period=10, end=0.2), "sgdr: `end` must be <= `lr`"),
        (lambda: onecycle(0.1, steps=100, pct_start=1.0), "`pct_start` must be < 1, got pct_start=1.0"),
        (lambda: plateau(0.1, factor=1.5), "plateau: `factor` must be < 1, got factor=1.5"),
        (lambda: plateau(0.1, mode="lowest"), "plateau: `mode` must be one of 'min', 'max'"),
        (lambda: clip(constant(0.1)), "clip: give `low`, `high` or both"),
        (lambda: horizon(constant(0.1), steps=5, after="wrap"), "`after` must be one of 'hold', 'error'"),
        (lambda: noise(constant(0.1), std=-1), "noise: `std` must be >= 0, got std=-1"),
        (lambda: from_config({"type": "cosinus"}), "unknown schedule type 'cosinus'; valid types:"),
        (
            lambda: from_config({"type": "cosine", "lr": 0.1, "steps": 5, "T_max": 3}),
            "unknown field(s) ['T_max']",
        ),
        (lambda: from_config({"type": "cosine", "lr": 0.1}), "missing 1 required positional argument"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_value(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: cosine(0.1, steps=0.3),
            "cosine: `steps` must be a whole number of optimizer steps, got steps=0.3",
        ),
        (
            lambda: sgdr(0.1, period=0.5),
            "sgdr: `period` must be a whole number of optimizer steps, got period=0.5",
        ),
        (lambda: warmup(2.5), "warmup: `steps` must be a whole number of optimizer steps, got steps=2.5"),
        (
            lambda: cosine(0.1, steps=7.5),
            "got steps=7.5; optimizer steps are counted whole: round it (steps=7 or 8)",
        ),
        (lambda: constant(0.1, steps=np.float64(9.9)), "constant: `steps` must be a whole number"),
        (lambda: linear(0.1, 0.0, steps=10.5), "linear: `steps` must be a whole number"),
        (lambda: polynomial(0.1, steps=0.9), "polynomial: `steps` must be a whole number"),
        (lambda: one_minus_sqrt(0.1, steps=0.5), "one_minus_sqrt: `steps` must be a whole number"),
        (lambda: exponential(0.1, factor=0.5, every=0.5), "exponential: `every` must be a whole number"),
        (lambda: inverse_time(0.1, rate=1.0, every=2.5), "inverse_time: `every` must be a whole number"),
        (lambda: cyclic(0.001, 0.1, half=0.25), "cyclic: `half` must be a whole number"),
        (lambda: cyclic(0.001, 0.1, half=2, down=1.5), "cyclic: `down` must be a whole number"),
        (lambda: horizon(constant(0.1), steps=0.5), "horizon: `steps` must be a whole number"),
        (lambda: inverse_sqrt(0.1, timescale=0.5), "inverse_sqrt: `timescale` must be a whole number"),
        (lambda: inverse_sqrt(0.1, warmup=0.1), "inverse_sqrt: `warmup` must be a whole number"),
        (lambda: wsd(0.1, warmup=0.1, stable=0.7, decay=0.2), "wsd: `warmup` must be a whole number"),
        (lambda: onecycle(0.1, steps=0.5), "onecycle: `steps` must be a whole number"),
        (lambda: step(0.1, every=0.5), "step: `every` must be a whole number"),
        (lambda: multistep(0.1, milestones=[0.5, 0.75]), "multistep: `milestones[0]` must be a whole number"),
    ],
)
def test_lengths_are_whole_numbers_of_optimizer_steps(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScheduleError) as info:
        make()
    text = str(info.value)
    assert message in text, text
    value = float(text.split("got ")[1].split("=")[1].split(";")[0])
    if value < 1:  # a fraction of training, not of a step: say how to convert it
        assert "a fraction of training is not a unit schedules take" in text
        assert "multiply it by the run's number of optimizer steps" in text, text
    else:
        assert "round it" in text, text


def test_integral_float_lengths_are_stored_as_ints() -> None:
    s = cosine(0.1, steps=500.0)
    assert s == cosine(0.1, steps=500) and type(s.steps) is int
    assert (
        parse("cosine(0.1, steps=5e2)") == s
        and str(parse("cosine(0.1, steps=5e2)")) == "cosine(0.1, steps=500)"
    )
    assert s.to_config() == {"type": "cosine", "lr": 0.1, "steps": 500}
    assert type(warmup(np.float64(10.0)).steps) is int and type(sgdr(0.1, period=10.0).period) is int
    assert exponential(0.1, factor=0.5, every=1.0).to_config() == {
        "type": "exponential",
        "lr": 0.1,
        "factor": 0.5,
    }
    with pytest.raises(ScheduleError, match=r"`steps` must be > 0, got steps=0\.0"):
        cosine(0.1, steps=0.0)


def test_internal_fractional_lengths_still_work() -> None:
    # torch puts one-cycle's phase ends at pct_start * steps - 1 (fractional); later repeat cycles
    # are `mul` times longer: neither is a length a user gives, so both still evaluate
    one = onecycle(0.1, steps=7)  # phases of 1.1 and 4.9 steps
    assert one(0) == pytest.approx(0.004) and one(6) == pytest.approx(0.004 / 1e4) and one.duration == 7
    s = repeat(cosine(0.1, steps=10), mul=1.5, cycles=2) >> constant(0.01)
    assert (
        s.duration is None
        and s(25) == 0.01
        and s(24) == pytest.approx(0.1 * (1 + np.cos(np.pi * 14 / 15)) / 2)
    )


def test_steps_are_validated() -> None:
    s = cosine(0.1, steps=10)
    with pytest.raises(ValueError, match="step must be in"):
        s(-1)
    with pytest.raises(TypeError, match="integer array"):
        s(np.array([0.5]))
    with pytest.raises(TypeError, match="bool"):
        s(True)
    with pytest.raises(ValueError, match="steps must be in"):
        s(np.array([1, -2]))
    assert s(np.int32(3)) == s(3)
    assert s(np.array([], dtype=int)).shape == (0,)


def test_lint_finds_common_mistakes() -> None:
    assert lint(parse("warmup(10) >> cosine(0.1, steps=90)"), steps=100) == []
    codes = lambda spec, n: [w.code for w in lint(parse(spec), steps=n)]  # noqa: E731
    assert codes("cosine(0.1, steps=50) >> constant(0.05)", 100) == ["jump"]
    assert codes("linear(0.0, 0.1, steps=10) >> constant(0.1)", 100) == ["zero-at-start"]
    assert codes("cosine(0.1, steps=50)", 100) == ["horizon-short"]
    assert codes("cosine(0.1, steps=5000)", 100) == ["horizon-long"]
    assert codes('horizon(cosine(0.1, steps=50), steps=50, after="error")', 100) == ["past-end"]
    jump = lint(parse("cosine(0.1, steps=50) >> constant(0.05)"), steps=100)[0]
    assert jump.step == 50 and "jumps from 0 to 0.05" in jump.message
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1"):
        lint(parse("constant(0.1)"), steps=0)


@pytest.mark.parametrize(
    "spec",
    [
        "step(0.1, every=30)",  # StepLR(step_size=30) stepped per batch: 97.6% of the run below 1e-8
        "exponential(0.1, factor=0.95)",
        "warmup(100) >> exponential(0.1, factor=0.95)",
        "cosine(0.1, steps=1000, end=1e-6) >> constant(1e-6)",
        "polynomial(0.1, steps=10000, power=20)",
    ],
)
def test_lint_finds_a_decay_that_leaves_most_of_the_run_at_a_tiny_lr(spec: str) -> None:
    found = lint(parse(spec), steps=10000)
    assert [w.code for w in found] == ["decays-early"], found
    s, w = parse(spec), found[0]
    v = s(np.arange(10000))
    assert w.step is not None and v[w.step] < 1e-3 * v.max() <= v[w.step - 1]
    assert "of the run" in w.message and "steps per epoch" in w.message


@pytest.mark.parametrize(
    ("spec", "restarts"),
    [
        ("sgdr(0.1, period=10)", 999),
        ("repeat(cosine(0.1, steps=10))", 999),
        ("cyclic(0.001, 0.1, half=5)", 999),
        ("cyclic(0.001, 0.1, half=5, momentum_range=[0.85, 0.95])", 999),
        ('0.5 * cyclic(0.001, 0.1, half=3, down=2, mode="exp_range", gamma=0.99999)', 1999),
        ("warmup(100) >> sgdr(0.1, period=10, end=1e-3) + 1e-5", 989),
        (
            "constant(0.1, steps=5000) >> repeat(linear(0.1, 0.01, steps=10), cycles=300) >> constant(0.01)",
            299,
        ),
        ("sgdr(0.1, period=10, mul=1.01)", 240),  # 10 * (1.01**241 - 1) / 0.01 > 9999
    ],
)
def test_lint_finds_a_period_given_in_epochs(spec: str, restarts: int) -> None:
    found = lint(parse(spec), steps=10000)
    assert [w.code for w in found] == ["many-cycles"], found
    assert f"restarts {restarts} times" in found[0].message, found[0].message
    if spec.startswith(("sgdr", "cyclic")):  # named in the user's words, not as the repeat it builds
        assert f"steps in {spec})" in found[0].message, found[0].message
    assert "steps per epoch" in found[0].message


def test_lint_leaves_good_decays_and_cycles_alone() -> None:
    from lrkit.schedules._lint import MANY_CYCLES

    good = {
        "cosine(0.1, steps=10000)": 10000,
        "warmup(500) >> cosine(0.003, steps=9500, end=1e-05)": 10000,
        'wsd(0.1, warmup=100, stable=7000, decay=2900, kind="sqrt")': 10000,
        "onecycle(0.1, steps=10000, final_div_factor=1e6)": 10000,
        "exponential(0.1, factor=0.9995)": 10000,  # ends at 0.7% of the peak: a strong decay, not a mistake
        "exponential(0.1, factor=0.999)": 10000,  # 1e-3 of the peak from 69% of the run
        "step(0.1, every=2500, factor=0.1)": 10000,  # 1e-4 for the last quarter
        "multistep(0.1, milestones=[5000, 7500, 9000], factor=0.1)": 10000,
        "polynomial(0.1, steps=10000, power=5)": 10000,
        "inverse_sqrt(0.1, warmup=1000)": 100000,
        "sgdr(0.1, period=100)": 100 * MANY_CYCLES + 1,  # 100 restarts: the most allowed
        "sgdr(0.1, period=10, mul=2)": 10**6,
        "cyclic(0.001, 0.1, half=2000)": 10000,
        "cyclic(0.0, 0.1, half=2000)": 10000,  # 0 at every restart, for one step
        "exponential(1e-7, factor=1.1)": 200,  # a range test: tiny before the peak, not after
        "warmup(100, start=0) >> cosine(0.1, steps=9900)": 10000,
        "cosine(0.1, steps=90)": 9000,  # the held tail is horizon-short's, not also decays-early
    }
    for spec, steps in good.items():
        codes = [w.code for w in lint(parse(spec), steps)]
        assert "decays-early" not in codes and "many-cycles" not in codes, (spec, codes)
    (more,) = lint(parse("sgdr(0.1, period=99)"), 100 * MANY_CYCLES + 1)
    assert more.code == "many-cycles" and f"restarts {MANY_CYCLES + 1} times" in more.message


@pytest.mark.parametrize("total", [4, 10, 100, 1000, 10000, 123457])
def test_lint_leaves_the_keyword_schedules_of_fit_clean(total: int) -> None:
    # what lrkit.train builds for "constant", "step", "cosine" and "onecycle" over a run of `total`
    keyword = [
        constant(0.1),
        multistep(0.1, milestones=tuple(sorted({max(1, total // 2), max(2, (3 * total) // 4)})), factor=0.1),
        cosine(0.1, steps=total),
        onecycle(0.1, steps=total),
        onecycle(0.1, steps=total, momentum_range=None),
    ]
    for s in keyword:
        assert lint(s, total) == [], (s, total)


def test_lint_leaves_the_readme_schedules_clean() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    specs = re.findall(r"^\| `([^`|]+(?:\\\|[^`|]+)*)` \|", readme, re.M)
    specs += re.findall(r"\"((?:warmup|cosine|onecycle|wsd|exponential)\([^\"]*\))\"", readme)
    checked = 0
    for spec in specs:
        try:
            s = parse(spec.replace("\\|", "|"))
        except ScheduleError:
            continue  # a pattern such as `warmup(10) >> s`
        steps = int(s.duration) if s.duration is not None else 100  # the length its example implies
        codes = [w.code for w in lint(s, steps)]
        assert "decays-early" not in codes and "many-cycles" not in codes, (spec, codes)
        checked += 1
    assert checked >= 20


def test_lint_hints_point_the_right_way() -> None:
    (short,) = lint(parse("cosine(0.1, steps=90)"), steps=9000)
    assert short.code == "horizon-short" and short.step == 90
    assert "in epochs" in short.message and "multiply" in short.message and "steps per epoch" in short.message
    (long,) = lint(parse("cosine(0.1, steps=36000)"), steps=9000)
    assert long.code == "horizon-long" and "epochs" not in long.message
    assert "micro-batches" in long.message and "samples" in long.message


def test_the_cli_lint_reports_the_new_findings() -> None:
    from typer.testing import CliRunner

    from lrkit.cli import app

    for spec, code in [
        ("step(0.1, every=30)", "decays-early"),
        ("cyclic(0.001, 0.1, half=5)", "many-cycles"),
    ]:
        out = CliRunner().invoke(app, ["schedule", "lint", spec, "--steps", "10000"])
        assert out.exit_code == 1 and f"[{code}]" in out.stdout, out.output
    clean = CliRunner().invoke(app, ["schedule", "lint", "sgdr(0.1, period=1000)", "--steps", "10000"])
    assert clean.exit_code == 0 and "no problems found" in clean.stdout, clean.output


def test_importing_lrkit_does_not_import_a_framework() -> None:
    code = (
        "import sys, lrkit, lrkit.schedules, lrkit.adapters; "
        "bad = [m for m in ('torch', 'jax', 'tensorflow', 'keras', 'matplotlib') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_lint_handles_warmups_mid_sequence_and_nested_sequences() -> None:
    mid = parse("constant(0.1, steps=10) >> warmup(5) >> cosine(0.1, steps=50)")
    assert [w.code for w in lint(mid, steps=65)] == ["jump"]  # 0.1 drops to the warmup's start
    assert lint(parse("constant(0.1, steps=10) >> warmup(5, start=1) >> cosine(0.1, steps=50)"), 65) == []
    nested = lint(parse("0.5 * (constant(0.1, steps=10) >> constant(0.5))"), steps=100)
    assert [(w.code, w.step) for w in nested] == [("jump", 10)]
    deep = lint(parse("constant(0.1, steps=10) >> (cosine(0.1, steps=20) >> constant(0.05))"), 100)
    assert [(w.code, w.step) for w in deep] == [("jump", 30)]


def test_lint_skips_joins_past_a_horizon() -> None:
    held = parse("horizon(cosine(0.1, steps=50) >> constant(0.1), steps=40)")
    assert [(w.code, w.step) for w in lint(held, 100)] == [("horizon-short", 40)]  # 50 is never reached
    reached = parse("horizon(cosine(0.1, steps=50) >> constant(0.1), steps=60)")
    assert [(w.code, w.step) for w in lint(reached, 100)] == [("jump", 50), ("horizon-short", 60)]
    # a part's own joins stop where the next part of the sequence takes over
    cut = parse(
        "(cosine(0.1, steps=50) >> constant(0.1, steps=50)) * constant(1.0, steps=30) >> constant(0.1)"
    )
    assert [(w.code, w.step) for w in lint(cut, 100)] == [("jump", 30)]


def test_lint_refuses_an_incomplete_schedule_like_check_complete() -> None:
    s = Sequence((constant(1.0, steps=2), warmup(3)))
    with pytest.raises(ScheduleError) as expected:
        s.check_complete()
    with pytest.raises(ScheduleError) as info:
        lint(s, 10)
    assert str(info.value) == str(expected.value) and "nothing to warm up to" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment", "low", "high"),
    [
        ({"steps": 2}, "use steps >= 4 with this pct_start, or a pct_start between", 0.5, 1.0),
        ({"steps": 3}, "use steps >= 4 with this pct_start", 1 / 3, 1.0),
        ({"steps": 10, "pct_start": 0.1}, "use steps >= 11 with this pct_start", 0.1, 1.0),
        ({"steps": 100, "three_phase": True, "pct_start": 0.6}, "here between 0.01 and 0.505", 0.01, 0.505),
        ({"steps": 2, "three_phase": True}, "here between 0.5 and 0.75 (both excluded)", 0.5, 0.75),
    ],
)
def test_onecycle_empty_phase_error_gives_a_range_that_works(
    kwargs: dict, fragment: str, low: float, high: float
) -> None:
    with pytest.raises(ScheduleError, match="leaves an empty phase") as info:
        onecycle(0.1, **kwargs)
    assert fragment in str(info.value), str(info.value)
    same_steps = {k: v for k, v in kwargs.items() if k != "pct_start"}
    for pct in np.linspace(low, high, 9)[1:-1]:  # every pct_start inside the range works
        onecycle(0.1, **same_steps, pct_start=float(pct))
    for pct in (low, high):  # and neither end does
        if pct < 1:
            with pytest.raises(ScheduleError, match="empty phase"):
                onecycle(0.1, **same_steps, pct_start=pct)
    if "steps >= " in fragment:  # the number of steps given is the least that works
        more = int(fragment.split("steps >= ")[1].split()[0])
        onecycle(0.1, **{**kwargs, "steps": more})
        with pytest.raises(ScheduleError, match="empty phase"):
            onecycle(0.1, **{**kwargs, "steps": more - 1})


def test_momentum_respects_the_error_horizon() -> None:
    s = parse('horizon(onecycle(0.1, steps=100), steps=100, after="error")')
    assert s.momentum(100) == 0.95
    with pytest.raises(HorizonError):
        s.momentum(150)
