"""Contract tests: one table over every suggestion rule (`lrkit.finder.RULES`).

Every rule has the signature ``rule(lrs, smoothed_losses) -> float`` and must: return a plain
float, never raise on degenerate curves (NaN means "nothing to read"), read nothing from a curve
that never falls, ignore non-finite points, leave its inputs untouched, not care where the losses
sit or in what units (negative losses, a scale), and move with the LR axis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from lrkit.finder import RULES, fell, progress_interval, rule, smooth

LRS = np.logspace(-6, 1, 80)
X = np.log10(LRS)
# A typical range-test curve: flat, a descent centred near 3e-3, a bottom, then divergence.
CURVE = 2.0 - 1.5 / (1.0 + np.exp(-3.0 * (X + 2.5))) + np.where(X > -0.5, 4.0 * (X + 0.5) ** 2, 0.0)
SMOOTH = smooth(CURVE)
NAMES = list(RULES)


def _read(name: str, lrs: Any, losses: Any) -> float:
    out = RULES[name](np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64))
    assert type(out) is float, f"{name} returned {type(out).__name__}"
    return out


@pytest.mark.parametrize("name", NAMES)
def test_reads_a_typical_curve_inside_the_sweep(name: str) -> None:
    lr = _read(name, LRS, SMOOTH)
    assert math.isfinite(lr)
    # minimum/10 may sit a decade below the minimum; nothing sits above the curve's minimum
    bottom = LRS[int(np.argmin(SMOOTH))]
    assert LRS[0] / 10 <= lr <= bottom * (1 + 1e-12)
    assert 1e-4 < lr < 1.0  # the descent is around 3e-3 and the bottom near 0.1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("case", "lrs", "losses"),
    [
        ("empty", np.array([]), np.array([])),
        ("two points", LRS[:2], SMOOTH[:2]),
        ("all NaN", LRS, np.full(LRS.size, np.nan)),
        ("all inf", LRS, np.full(LRS.size, np.inf)),
        ("constant", LRS, smooth(np.full(LRS.size, 2.0))),
        ("only rising", LRS, smooth(1.0 + X - X[0])),
        ("rises then comes back to its start", LRS, smooth(2.0 + np.sin(np.linspace(0, np.pi, LRS.size)))),
    ],
)
def test_nothing_to_read_is_nan_not_an_error(name: str, case: str, lrs: Any, losses: Any) -> None:
    assert math.isnan(_read(name, lrs, losses)), case


@pytest.mark.parametrize("name", NAMES)
def test_loss_offset_and_scale_do_not_matter(name: str) -> None:
    base = _read(name, LRS, SMOOTH)
    assert _read(name, LRS, SMOOTH - 10.0) == pytest.approx(base, rel=1e-12)  # negative losses
    assert _read(name, LRS, 7.0 * SMOOTH) == pytest.approx(base, rel=1e-12)
    assert _read(name, LRS, 1e-3 * SMOOTH) == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_moves_with_the_lr_axis(name: str) -> None:
    base = _read(name, LRS, SMOOTH)
    assert _read(name, LRS * 100.0, SMOOTH) == pytest.approx(100.0 * base, rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_points_are_ignored_and_inputs_untouched(name: str) -> None:
    lrs, losses = LRS.copy(), SMOOTH.copy()
    holey = losses.copy()
    holey[[5, 17, 33]] = [np.nan, np.inf, np.nan]  # in the flat head, away from what rules read
    holey_copy = holey.copy()
    got = _read(name, lrs, holey)
    np.testing.assert_array_equal(holey, holey_copy)
    np.testing.assert_array_equal(lrs, LRS)
    assert got == pytest.approx(_read(name, np.delete(LRS, [5, 17, 33]), np.delete(losses, [5, 17, 33])))


@pytest.mark.parametrize("name", NAMES)
def test_lists_work_like_arrays(name: str) -> None:
    assert RULES[name](LRS.tolist(), SMOOTH.tolist()) == _read(name, LRS, SMOOTH)  # type: ignore[arg-type]


def test_rules_keep_their_order_on_a_typical_curve() -> None:
    r = {name: _read(name, LRS, SMOOTH) for name in NAMES}
    assert r["minimum/10"] < r["minimum"]
    assert r["steepest"] < r["minimum"] and r["valley"] < r["minimum"] and r["slide"] < r["minimum"]
    assert r["lrkit"] < r["lrkit-peak"] < r["minimum"]
    # lrkit's readings are geometric means of steepest and a fraction of the minimum
    assert r["lrkit"] == pytest.approx(math.sqrt(r["steepest"] * r["minimum"] / 10))
    assert r["lrkit-peak"] == pytest.approx(math.sqrt(r["steepest"] * r["minimum"] / 5))


def test_fell_and_the_interval_agree() -> None:
    assert fell(LRS, SMOOTH)
    lo, hi = progress_interval(LRS, SMOOTH)
    assert LRS[0] < lo < hi == LRS[int(np.argmin(SMOOTH))]
    flat = smooth(np.full(LRS.size, 2.0))
    assert not fell(LRS, flat)
    assert all(math.isnan(v) for v in progress_interval(LRS, flat))


def test_the_interval_starts_where_the_descent_begins_not_on_a_bumpy_plateau() -> None:
    # A long plateau with a bump near its start (a fifth of the drop: early noise that the
    # smoothing kept) before the same descent as CURVE: the loss starts to fall near 1e-4.
    bumpy = CURVE + 0.3 * np.exp(-(((X + 5.6) / 0.3) ** 2))
    lo, hi = progress_interval(LRS, smooth(bumpy))
    assert hi == LRS[int(np.argmin(smooth(bumpy)))]
    assert 5e-5 < lo < 1e-3  # the onset: the logistic falls at a twentieth of its steepest rate
    assert progress_interval(LRS, SMOOTH)[0] == pytest.approx(lo, rel=0.25)  # as without the bump
    # the interval moves with the LR axis, like every rule
    lo10, hi10 = progress_interval(LRS * 10, smooth(bumpy))
    assert (lo10, hi10) == pytest.approx((10 * lo, 10 * hi))


def test_unknown_rule_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'stepest'.*steepest, valley"):
        rule("stepest")
