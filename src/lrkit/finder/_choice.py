"""Choosing among verification candidates: where the candidates sit, how noisy their scores are,
and which one wins.

Three decisions, each with its reason:

- The candidates lie on a fixed log grid (half-decades with five candidates over two decades),
  not on a grid centred on the sweep's reading. Two sweeps whose readings differ a little then
  test the same LRs, and the same evidence gives the same answer.
- Every score comes with the noise of its difference from the best score. The candidates train
  on the same batches and are scored on the same validation examples, so the comparison is
  paired: the standard error of the mean of per-piece differences (pieces of the validation
  batches, see `lrkit.finder._sweep.PIECES`; per-step training losses without validation data).
- The winner is the smallest LR whose score is within one standard error of the best: the
  one-standard-error rule (Breiman, Friedman, Olshen and Stone, "Classification and Regression
  Trees", 1984; Hastie, Tibshirani and Friedman, "The Elements of Statistical Learning", 2009,
  section 7.10), with the smaller LR as the more conservative model. On a small or noisy
  validation set it refuses to trust differences the data cannot resolve; on a large one it
  reduces to the plain minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def candidate_grid(suggestion: float, candidates: int, span: float) -> list[float]:
    """`candidates` LRs evenly spaced in log10 over ``2 * span`` decades, on the fixed grid
    ``10 ** (k * step)`` with ``step = 2 * span / (candidates - 1)``, starting at the grid point
    nearest to ``suggestion / 10 ** span``.

    >>> [f"{lr:.3g}" for lr in candidate_grid(0.0123, 5, 1.0)]
    ['0.001', '0.00316', '0.01', '0.0316', '0.1']
    >>> candidate_grid(0.0123, 5, 1.0) == candidate_grid(0.0089, 5, 1.0)
    True
    """
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
        raise ValueError(f"`candidates` must be an integer >= 2, got candidates={candidates!r}")
    if not (math.isfinite(suggestion) and suggestion > 0):
        raise ValueError(f"`suggestion` must be a finite number > 0, got suggestion={suggestion!r}")
    step = 2.0 * span / (candidates - 1)
    first = round((math.log10(suggestion) - span) / step)
    return [float(10.0 ** ((first + i) * step)) for i in range(candidates)]


def paired_scores(
    samples: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> tuple[list[float], list[float]]:
    """Scores and their paired standard errors from aligned samples.

    Args:
        samples: shape ``(candidates, pieces)``: the loss of each candidate on each piece (the
            same pieces for every candidate); a row with a non-finite value is a failed
            candidate (score and error inf).
        weights: the size of each piece (default: equal).

    Returns:
        ``(scores, errors)``: each candidate's weighted mean loss, and the standard error of the
        weighted mean of its per-piece differences from the best candidate (0 for the best, and
        0 when there is a single piece).

    >>> scores, errors = paired_scores([[1.0, 2.0, 3.0], [1.1, 2.1, 3.3]])
    >>> [round(s, 3) for s in scores], [round(e, 3) for e in errors]
    ([2.0, 2.167], [0.0, 0.067])
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"`samples` must have shape (candidates, pieces >= 1), got {x.shape}")
    w = np.ones(x.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (x.shape[1],) or not np.all(w > 0):
        raise ValueError(f"`weights` must be {x.shape[1]} positive numbers, got {w.tolist()}")
    ok = np.all(np.isfinite(x), axis=1)
    scores = np.where(ok, (np.where(ok[:, None], x, 0.0) @ w) / w.sum(), math.inf)
    errors = np.full(x.shape[0], math.inf)
    if not ok.any():
        return scores.tolist(), errors.tolist()
    best = int(np.argmin(scores))
    n = x.shape[1]
    for k in np.flatnonzero(ok):
        d = x[k] - x[best]
        if n < 2:
            errors[k] = 0.0
            continue
        mean = float(d @ w) / float(w.sum())
        var = float(np.sum(w**2 * (d - mean) ** 2)) / float(w.sum()) ** 2 * n / (n - 1)
        errors[k] = math.sqrt(var)
    return scores.tolist(), errors.tolist()


def tied(scores: Sequence[float], errors: Sequence[float]) -> list[bool]:
    """Whether each score is within its standard error (`errors`, paired with the best score; a
    non-finite error counts as 0) of the best finite score; a non-finite score never is.

    >>> tied([2.0, 1.05, 1.0, float("inf")], [0.9, 0.08, 0.0, float("nan")])
    [False, True, True, False]
    """
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return [False] * len(scores)
    top = min(finite)
    return [
        math.isfinite(s) and s - top <= (e if math.isfinite(e) else 0.0)
        for s, e in zip(scores, errors, strict=True)
    ]


def select(
    lrs: Sequence[float],
    scores: Sequence[float],
    errors: Sequence[float] | None,
    steps: int,
    train_steps: int | None,
) -> tuple[float | None, float]:
    """The winning candidate, and the short-horizon correction to apply to it.

    The winner is the smallest LR whose score is within one standard error (`errors`, paired
    with the best score) of the best score: within noise, the smaller LR is the safer choice.
    Without `errors`, the plain minimum wins.

    The candidates trained only `steps` of the planned `train_steps`, and a short run favours
    large LRs: while the model is under-trained what counts is roughly ``lr * steps``, so the
    best LR of a run K times longer would be K times smaller, while once training has converged
    the length no longer matters. The correction is the geometric middle of those two regimes,
    ``sqrt(steps / train_steps)`` (1 when the planned length is unknown or no longer than the
    verification runs).

    >>> select([1e-3, 1e-2, 1e-1], [2.0, 1.05, 1.0], [0.9, 0.08, 0.0], 50, None)
    (0.01, 1.0)
    >>> select([1e-3, 1e-2, 1e-1], [2.0, 1.05, 1.0], [0.9, 0.02, 0.0], 50, 200)
    (0.1, 0.5)
    """
    if errors is None:
        errors = [0.0] * len(scores)
    if not (len(lrs) == len(scores) == len(errors)):
        raise ValueError(
            f"`lrs`, `scores` and `errors` must have the same length, got {len(lrs)}, {len(scores)}, "
            f"{len(errors)}"
        )
    ties = [lr for lr, tie in zip(lrs, tied(scores, errors), strict=True) if tie]
    if not ties:
        return None, 1.0
    best = min(ties)
    horizon = 1.0
    if train_steps is not None and train_steps > steps:
        horizon = math.sqrt(steps / train_steps)
    return best, horizon
