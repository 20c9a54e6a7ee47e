"""The LR finder for a training that clips its gradients: `find_lr(clip_grad_norm=...)` against
the same finder that does not know about the clipping.

For each configuration the oracle trains the task at 13 log-spaced LRs (1e-5 .. 10, half a decade
apart) x 3 seeds, every run clipping its gradients to a total norm of `--clip` (default 1); the
finder (verified on the validation split with the run's length, `benchmarks/finder.py`'s default
call) runs with 5 seeds, once with ``clip_grad_norm=clip`` and once without; each pick is trained
at the oracle's 3 seeds with clipping, and its regret is what the mean of those runs loses against
the oracle's best mean: accuracy points, or % relative validation MSE for the regression task (a
run that diverges counts as 0 accuracy or a relative MSE of 10, as in `benchmarks/finder.py`).

    .venv/bin/python benchmarks/finder_clipping.py [--clip 1.0] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import finder as F  # the finder benchmark's setup, grid and seeds

CONFIGS = [
    ("lstm-sequence", "momentum"),
    ("lstm-sequence", "adam"),
    ("mlp-digits", "momentum"),
    ("mlp-diabetes", "momentum"),
    ("mlp-diabetes", "adam"),
]


def job_train(task_name: str, optimizer: str, lr: float, seed: int, clip: float) -> float:
    from lrkit.tasks import get, train

    F._setup()
    task = get(task_name)
    r = train(task, optimizer=optimizer, lr=lr, seed=seed, clip_grad_norm=clip)
    if r.diverged or not math.isfinite(r.val_metric):
        return 10.0 if task.mode == "min" else 0.0
    return r.val_metric


def job_find(task_name: str, optimizer: str, seed: int, clip: float | None) -> float:
    from lrkit.finder import find_lr

    task, model, opt, loader = F._finder_inputs(task_name, optimizer, seed)
    kwargs: dict[str, Any] = {
        "val_loader": task.loader(seed, "val"),
        "train_steps": task.epochs * len(loader),
    }
    return find_lr(model, opt, task.loss, loader, seed=seed, clip_grad_norm=clip, **kwargs).suggestion


def _train(args: tuple[Any, ...]) -> float:
    return job_train(*args)


def _find(args: tuple[Any, ...]) -> float:
    return job_find(*args)


def _regret(best: float, value: float, mode: str) -> float:
    return 100 * (value / best - 1) if mode == "min" else 100 * (best - value)


def main() -> None:
    from lrkit.tasks import get

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=float, default=1.0, help="the training's gradient clipping norm")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    clip = args.clip
    seeds = F.ORACLE_SEEDS
    rows = []
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for task, opt in CONFIGS:
            mode = get(task).mode
            metrics = pool.map(_train, [(task, opt, lr, s, clip) for lr in F.GRID for s in seeds])
            means = {
                lr: statistics.mean(metrics[i * len(seeds) : (i + 1) * len(seeds)])
                for i, lr in enumerate(F.GRID)
            }
            best_lr = (min if mode == "min" else max)(means, key=lambda lr: means[lr])
            for given in (True, False):
                picks = pool.map(_find, [(task, opt, s, clip if given else None) for s in F.FINDER_SEEDS])
                runs = pool.map(_train, [(task, opt, lr, s, clip) for lr in picks for s in seeds])
                per_pick = [
                    statistics.mean(runs[i * len(seeds) : (i + 1) * len(seeds)]) for i in range(len(picks))
                ]
                regrets = [_regret(means[best_lr], m, mode) for m in per_pick]
                rows.append((task, opt, given, best_lr, means[best_lr], picks, regrets))
                print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"`.venv/bin/python benchmarks/finder_clipping.py --clip {clip}`: every training clips at {clip}.\n"
    )
    print(
        "| task | optimizer | finder told of it | oracle LR (mean) | picks (5 seeds) | mean regret | worst |"
    )
    print("|---|---|---|---:|---|---:|---:|")
    for task, opt, given, best_lr, best, picks, regrets in rows:
        print(
            f"| {task} | {opt} | {'yes' if given else 'no'} | {best_lr:.3g} ({best:.4f}) | "
            f"{', '.join(f'{p:.3g}' for p in picks)} | {statistics.mean(regrets):.2f} | {max(regrets):.2f} |"
        )


if __name__ == "__main__":
    main()
