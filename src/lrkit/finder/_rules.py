"""Suggestion rules: pure NumPy functions that read an LR from a range-test curve.

Every rule has one signature, ``rule(lrs, losses) -> float`` (NaN when it finds nothing), where
`lrs` is increasing and `losses` is the *smoothed* loss up to the point where the sweep stopped.
A curve that never falls (`fell` is False: its lowest point comes first, or is lower than an
earlier point only by rounding) has nothing to read, and every rule returns NaN for it rather
than a reading of rounding ripples.
The curve is smoothed without lag (a centred Gaussian in log-LR, see `smooth`), because the
exponential moving average that other finders use shifts the whole curve to higher LRs by the
length of its memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Rule = Callable[[FloatArray, FloatArray], float]


def smooth(losses: npt.ArrayLike, width: float = 0.05) -> FloatArray:
    """Centred Gaussian smoothing over the sweep index, renormalized at the edges.

    `width` is the kernel's standard deviation as a fraction of the number of points (at least
    one point). Non-finite losses are ignored (they get zero weight). Losses are first clipped
    from above at `divergence_cap`: a kernel's tails are small but not zero, and a diverged loss
    of 1e12 at the end of a sweep would otherwise lift the smoothed curve twenty points before
    it, where the raw loss is still at its lowest.
    """
    y = np.asarray(losses, dtype=np.float64)
    n = y.size
    if n == 0:
        return y.copy()
    sigma = max(width * n, 1.0)
    finite = np.isfinite(y)
    y = np.minimum(y, divergence_cap(y))
    idx = np.arange(n, dtype=np.float64)
    kernel = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2) * finite[None, :]
    weights = kernel.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (kernel @ np.where(finite, y, 0.0)) / weights
    return np.where(weights > 0, out, np.nan)


def divergence_cap(losses: npt.ArrayLike, head: float = 0.1) -> float:
    """The level above which a sweep's loss carries no more information: as far above the
    starting loss as the lowest loss is below it.

    The starting loss is the median of the first `head` fraction of the finite losses (at least
    three). A loss above ``start + (start - lowest)`` is worse than where the sweep started by as
    much as the best point improved on it: the sweep has diverged there, and how far it has
    diverged does not matter to any rule. Differences, so negative losses work. ``inf`` when
    there are no finite losses.

    >>> divergence_cap([2.0, 2.1, 1.9, 1.0, 0.5, 9e12])
    3.5
    """
    y = np.asarray(losses, dtype=np.float64)
    y = y[np.isfinite(y)]
    if y.size == 0:
        return math.inf
    start = float(np.median(y[: max(3, int(head * y.size))]))
    return start + max(start - float(y.min()), 0.0)


def _valid(lrs: FloatArray, losses: FloatArray) -> tuple[FloatArray, FloatArray]:
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(losses) & np.isfinite(lrs) & (lrs > 0)
    return lrs[keep], losses[keep]


def _slopes(lrs: FloatArray, losses: FloatArray) -> FloatArray:
    return np.gradient(losses, np.log10(lrs))


def _drop(y: FloatArray) -> tuple[int, int, float]:
    """(index of the lowest point, index of the highest point before it, the drop between them)."""
    i_min = int(np.argmin(y))
    i_top = int(np.argmax(y[: i_min + 1]))
    return i_min, i_top, float(y[i_top] - y[i_min])


def fell(lrs: npt.ArrayLike, losses: npt.ArrayLike) -> bool:
    """Whether the curve falls at all: its lowest point is below an earlier one by more than
    rounding (a constant loss smooths to one with ripples of 1e-16). The range test's status is
    "flat" when it does not.

    >>> fell([1e-3, 1e-2, 1e-1], [2.0, 1.5, 3.0]), fell([1e-3, 1e-2, 1e-1], [2.0, 2.5, 3.0])
    (True, False)
    """
    _, y = _valid(np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64))
    return _falls(y)


def _falls(y: FloatArray) -> bool:
    """`fell` on losses that are already finite (`_valid`)."""
    if y.size < 2:
        return False
    _, i_top, drop = _drop(y)
    return drop > 1e-9 * max(abs(float(y[i_top])), 1e-300)


def minimum(lrs: FloatArray, losses: FloatArray) -> float:
    """The LR at the lowest point of the smoothed curve (not yet divided)."""
    x, y = _valid(lrs, losses)
    if x.size < 3 or not _falls(y):
        return math.nan
    return float(x[int(np.argmin(y))])


def minimum_div10(lrs: FloatArray, losses: FloatArray) -> float:
    """One tenth of the LR at the lowest point (Smith's and fastai's rule of thumb)."""
    return minimum(lrs, losses) / 10.0


def steepest(lrs: FloatArray, losses: FloatArray) -> float:
    """The LR where the smoothed loss falls fastest against log LR, before its minimum.

    The classic suggestion of torch-lr-finder and Lightning. With momentum SGD it tends to be
    about ten times what a constant LR tolerates, because the sweep itself acts as a warmup.
    """
    x, y = _valid(lrs, losses)
    if x.size < 5 or not _falls(y):
        return math.nan
    stop = int(np.argmin(y)) + 1
    if stop < 3:
        return math.nan
    g = _slopes(x[:stop], y[:stop])
    if not np.any(g < 0):
        return math.nan
    return float(x[int(np.argmin(g))])


def valley(lrs: FloatArray, losses: FloatArray) -> float:
    """Two thirds of the way down the longest descent of the smoothed curve.

    The descent is the longest run of consecutive points over which the smoothed loss keeps
    falling (by index, in log-LR); the LR two thirds of the way along it sits past the steep
    part and before the bottom, where the loss is still falling but no longer fastest.
    """
    x, y = _valid(lrs, losses)
    if x.size < 5 or not _falls(y):
        return math.nan
    falling = np.diff(y) < 0
    best_len, best_start, run_start = 0, 0, 0
    for i, f in enumerate(np.append(falling, False)):
        if not f:
            if i - run_start > best_len:
                best_len, best_start = i - run_start, run_start
            run_start = i + 1
    if best_len < 2:
        return math.nan
    return float(x[best_start + (2 * best_len) // 3])


def slide(lrs: FloatArray, losses: FloatArray) -> float:
    """Slide back from the minimum to where the curve was still clearly falling.

    Starting at the lowest point, step towards smaller LRs while the loss is within 10% of the
    total drop of the minimum (the flat bottom of the curve); the first LR beyond that band.
    """
    x, y = _valid(lrs, losses)
    if x.size < 5 or not _falls(y):
        return math.nan
    i_min, _, drop = _drop(y)
    band = y[i_min] + 0.1 * drop
    i = i_min
    while i > 0 and y[i] <= band:
        i -= 1
    return float(x[i])


def noise(losses: npt.ArrayLike, smoothed: npt.ArrayLike) -> float:
    """Robust standard deviation (1.4826 x median absolute deviation) of the raw losses around
    the smoothed curve, over the points where both are finite; 0 when there are none."""
    raw, sm = np.asarray(losses, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    ok = np.isfinite(raw) & np.isfinite(sm)
    if not ok.any():
        return 0.0
    resid = raw[ok] - sm[ok]
    return 1.4826 * float(np.median(np.abs(resid - np.median(resid))))


def rise(losses: npt.ArrayLike, smoothed: npt.ArrayLike) -> float:
    """How far the smoothed curve ends above its lowest point, in units of the raw losses'
    `noise` (NaN when there is no curve or no noise to measure it by).

    >>> f"{rise([2.0, 1.9, 2.1, 1.0, 1.1, 0.9, 2.0], [2.0, 2.0, 1.5, 1.0, 1.0, 1.0, 1.5]):.2f}"
    '3.37'
    """
    sm = np.asarray(smoothed, dtype=np.float64)
    scale = noise(losses, sm)
    if sm.size == 0 or not np.isfinite(sm).any() or scale <= 0:
        return math.nan
    return (float(sm[-1]) - float(np.nanmin(sm))) / scale


#: The interval of useful LRs starts where the descent to the minimum falls at this fraction of
#: its steepest rate (against log LR).
ONSET = 0.05


def progress_interval(lrs: FloatArray, losses: FloatArray) -> tuple[float, float]:
    """The interval of useful LRs: from where the descent to the lowest point begins to that
    lowest point (NaNs when the loss never falls).

    The descent begins where the smoothed loss, read against log LR, still falls at `ONSET` (a
    twentieth) of its steepest rate before the minimum, walking back from the steepest point:
    Smith's lower bound for a cyclical LR, the LR at which the loss starts to fall. A bound read
    from the loss levels instead (where the loss has made 10% of its drop from the highest point
    before the minimum) lands anywhere on a long, noisy plateau before the descent, as far as the
    start of the sweep; on lrkit's finder benchmark it moved about twice as far across seeds
    (``benchmarks/RESULTS.md``). The best LR of a full training run can still lie below the
    interval, where a long run at a small LR makes progress the sweep cannot see.

    >>> x = np.logspace(-6, 0, 61)
    >>> y = 1.0 - 0.5 * np.tanh(2.0 * (np.log10(x) + 3.0)) + np.where(x > 0.1, 5 * np.log10(10 * x), 0)
    >>> lo, hi = progress_interval(x, y)
    >>> f"{lo:.1e} .. {hi:.1e}"
    '1.0e-04 .. 1.0e-01'
    """
    x, y = _valid(lrs, losses)
    if x.size < 5 or not _falls(y):
        return (math.nan, math.nan)
    i_min = int(np.argmin(y))
    g = _slopes(x[: i_min + 1], y[: i_min + 1])
    i = int(np.argmin(g))
    threshold = ONSET * float(g[i])
    while i > 0 and g[i - 1] <= threshold:
        i -= 1
    return (float(x[i]), float(x[i_min]))


def _geometric_mean(*values: float) -> float:
    good = [v for v in values if math.isfinite(v) and v > 0]
    if not good:
        return math.nan
    return math.exp(sum(math.log(v) for v in good) / len(good))


def lrkit_constant(lrs: FloatArray, losses: FloatArray) -> float:
    """lrkit's reading of the curve for a constant LR trained from scratch.

    The geometric mean of `steepest` and `minimum_div10`. The steepest point is where the sweep
    makes the most progress, but the sweep has warmed the model up to get there, so a constant LR
    from scratch is usually lower; a tenth of the minimum is a conservative bound below it. Halfway
    between them (in log LR) errs by at most half the distance between two rules that each fail
    on some problems. Without verification this is `FinderResult.suggestion`.
    """
    return _geometric_mean(steepest(lrs, losses), minimum_div10(lrs, losses))


def lrkit_peak(lrs: FloatArray, losses: FloatArray) -> float:
    """lrkit's reading of the curve for the peak of a warmup-then-anneal schedule (one-cycle).

    The geometric mean of `steepest` and a fifth of the minimum: a peak is reached after a
    warmup and held briefly, so it can sit closer to the minimum than a constant LR.
    """
    m = minimum(lrs, losses)
    return _geometric_mean(steepest(lrs, losses), m / 5.0 if math.isfinite(m) else math.nan)


#: Decades below the LR at which a sweep diverged where lrkit reads a sweep whose loss never fell.
#: On the diverged sweeps of lrkit's finder benchmark the best LR of the oracle grid lies a median
#: 2.4 decades below that point (10th to 90th percentile: 1.8 to 3.8 decades).
FLAT_DECADES = 2.5


def below_divergence(lr_diverged: float, peak: bool = False) -> float:
    """lrkit's reading of a sweep on which the loss never fell before it diverged at `lr_diverged`.

    The curve has no minimum to read (some deep networks sit on a plateau until the LR is nearly
    too large for them), but the point of divergence is still an upper bound: the reading is
    `FLAT_DECADES` below it, and a one-cycle peak (``peak=True``) sqrt(2) higher, as
    `lrkit_peak` is above `lrkit_constant`. NaN when `lr_diverged` is not a positive number.

    >>> f"{below_divergence(1.0):.4f}"
    '0.0032'
    """
    if not (math.isfinite(lr_diverged) and lr_diverged > 0):
        return math.nan
    reading = lr_diverged * 10.0**-FLAT_DECADES
    return reading * math.sqrt(2.0) if peak else reading


RULES: Mapping[str, Rule] = {
    "steepest": steepest,
    "valley": valley,
    "minimum/10": minimum_div10,
    "slide": slide,
    "minimum": minimum,
    "lrkit": lrkit_constant,
    "lrkit-peak": lrkit_peak,
}


def rule(name: str) -> Rule:
    """Look up a suggestion rule by name (unknown names list the valid ones)."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown suggestion rule {name!r}; valid rules: {', '.join(RULES)}") from None
