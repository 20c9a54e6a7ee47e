"""Replay other ways of choosing among the finder's verified candidates, without rerunning it.

`benchmarks/finder.py` caches, for every lrkit finder run, the verified candidates, their
validation losses and the standard error of each loss's difference from the best. This script
applies other selection rules to those cached numbers, trains each rule's pick (at the finder
run's seed and at the oracle's seeds, cached like every training run) and prints both readings of
`benchmarks/finder.py`: one run, and the mean over the oracle's seeds.

Rules:
- default: lrkit's rule, the smallest candidate within one standard error of the best.
- softmin: a geometric mean of the candidates weighted by exp(-z**2 / 2), z the candidate's
  distance from the best in standard errors.
- mid: the geometric midpoint of the default's pick and the best candidate.
- smoothed: the candidates' scores averaged with their neighbours' on the grid (weights 1/4,
  1/2, 1/4), then the default rule on them (the same standard errors), or their minimum.
- one-cycle, half / no correction: the default rule, with the horizon factor's exponent halved
  or zero for the one-cycle target (its peak's optimum may move less with the training length
  than a constant LR's, since the schedule anneals the noise away at the end).

Each pick is multiplied by the run's horizon factor, as lrkit does (raised to the variant's
exponent). Run `benchmarks/finder.py` first (with `--holdout` for the held-out tasks); this script
then needs only the training runs of the new picks.

    .venv/bin/python benchmarks/finder_replay.py [--workers 2] [--holdout]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence

import finder as F
import numpy as np

Rule = Callable[[Sequence[float], Sequence[float], Sequence[float]], float]


def _default(lrs: Sequence[float], scores: Sequence[float], errors: Sequence[float]) -> float:
    top = min(scores)
    return min(lr for lr, s, e in zip(lrs, scores, errors, strict=True) if math.isfinite(s) and s - top <= e)


def _softmin(lrs: Sequence[float], scores: Sequence[float], errors: Sequence[float]) -> float:
    top = min(scores)
    weights = []
    for s, e in zip(scores, errors, strict=True):
        if not math.isfinite(s):
            weights.append(0.0)
        elif s == top:
            weights.append(1.0)
        else:
            weights.append(math.exp(-0.5 * ((s - top) / e) ** 2) if e > 0 else 0.0)
    w = np.asarray(weights)
    return float(np.exp(w @ np.log(np.asarray(lrs)) / w.sum()))


def _mid(lrs: Sequence[float], scores: Sequence[float], errors: Sequence[float]) -> float:
    best = lrs[int(np.argmin(scores))]
    return math.sqrt(_default(lrs, scores, errors) * best)


def _smoothed(scores: Sequence[float]) -> np.ndarray:
    """Each finite score averaged with its finite neighbours on the grid, weights 1/4, 1/2, 1/4."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.full_like(s, math.inf)
    for k in np.flatnonzero(np.isfinite(s)):
        near = [
            (j, w)
            for j, w in ((k - 1, 0.25), (k, 0.5), (k + 1, 0.25))
            if 0 <= j < len(s) and np.isfinite(s[j])
        ]
        out[k] = sum(w * s[j] for j, w in near) / sum(w for _, w in near)
    return out


def _smooth_1se(lrs: Sequence[float], scores: Sequence[float], errors: Sequence[float]) -> float:
    sm = _smoothed(scores)
    return _default(lrs, sm.tolist(), errors)


def _smooth_min(lrs: Sequence[float], scores: Sequence[float], errors: Sequence[float]) -> float:
    return lrs[int(np.argmin(_smoothed(scores)))]


#: name -> (selection rule, exponent of the horizon factor for the one-cycle target; the constant
#: target always takes the full factor)
RULES: dict[str, tuple[Rule, float]] = {
    "default": (_default, 1.0),
    "softmin": (_softmin, 1.0),
    "mid": (_mid, 1.0),
    "smoothed, one standard error": (_smooth_1se, 1.0),
    "smoothed, minimum": (_smooth_min, 1.0),
    "one-cycle: half the correction": (_default, 0.5),
    "one-cycle: no correction": (_default, 0.0),
}


def _picks(cache: dict, t: str, o: str, tg: str, seed: int) -> dict[str, float]:
    r = cache[F._key(("lrkit", t, o, seed, tg))]
    if "errors" not in r:
        where = f"{t}/{o}/{tg}/seed {seed}"
        raise SystemExit(f"the cache has no standard errors for {where}: run benchmarks/finder.py first")
    args = (r["candidates"], r["scores"], r["errors"])
    picks = {
        name: F._round_lr(rule(*args) * r["horizon_factor"] ** (1.0 if tg == "constant" else cycle))
        for name, (rule, cycle) in RULES.items()
    }
    if not math.isclose(picks["default"], F._round_lr(r["suggestion"]), rel_tol=1e-9):
        raise SystemExit(
            f"default {picks['default']} != cached suggestion {r['suggestion']} at {t}/{o}/{tg}/{seed}"
        )
    return picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--holdout", action="store_true", help="the held-out tasks' cache instead")
    args = parser.parse_args()
    F._setup()
    from lrkit.tasks import get

    tasks = F.select_suite(args.holdout)
    cache = json.loads(F.CACHE.read_text())
    configs = [(t, o, tg) for t in tasks for o in F.OPTIMIZERS for tg in F.TARGETS]
    jobs = []
    for t, o, tg in configs:
        for s in F.FINDER_SEEDS:
            for lr in _picks(cache, t, o, tg, s).values():
                jobs += [("train", t, o, tg, lr, s2) for s2 in (s, *F.ORACLE_SEEDS)]
    F.run_all(jobs, cache, args.workers)
    F._save(cache)

    keys = ("one", "mean", "one_cls", "mean_cls", "one_reg", "mean_reg", "spread")
    rows: dict[str, dict[str, list[float]]] = {name: {k: [] for k in keys} for name in RULES}
    for t, o, tg in configs:
        task = get(t)
        higher = task.mode == "max"
        oracle, _ = F._oracle(cache, t, o, tg, higher)
        trivial = F._trivial(task)
        picks = {s: _picks(cache, t, o, tg, s) for s in F.FINDER_SEEDS}
        kind = "cls" if higher else "reg"
        for name, r in rows.items():
            lrs = [picks[s][name] for s in F.FINDER_SEEDS]
            r["spread"].append(math.log10(max(lrs) / min(lrs)))
            for s, lr in zip(F.FINDER_SEEDS, lrs, strict=True):
                config = (t, o, tg, lr, higher, oracle, trivial)
                for reading, seeds in (("one", (s,)), ("mean", F.ORACLE_SEEDS)):
                    regret, _ = F._score(cache, config, seeds)
                    r[reading].append(regret)
                    r[f"{reading}_{kind}"].append(regret)
    print(
        "| rule | one run: mean / worst cls / worst reg | seed mean: mean / worst cls / worst reg "
        "| seed spread (mean / max) |"
    )
    print("|---|---|---|---|")
    for name, r in rows.items():
        one = f"{np.mean(r['one']):.2f} / {max(r['one_cls']):.1f} / {max(r['one_reg']):.1f}"
        mean = f"{np.mean(r['mean']):.2f} / {max(r['mean_cls']):.1f} / {max(r['mean_reg']):.1f}"
        print(f"| {name} | {one} | {mean} | {np.mean(r['spread']):.2f} / {max(r['spread']):.2f} |")


if __name__ == "__main__":
    main()
