"""Optimizers: K-FAC and the learning-rate-free methods against SGD with momentum and Adam at
their oracle-grid LRs, on every built-in task.

For every built-in task, trained with `lrkit.train.fit` for the task's default epochs with a
constant schedule, over seeds 0 and 1:

- SGD with momentum 0.9 and Adam, each over a log grid of 8 LRs (1e-4 .. 0.3, half a decade
  apart); the oracle LR is the one with the best mean final validation metric;
- Adam at its default LR (1e-3, a point of the grid);
- K-FAC, DoG, L-DoG and Prodigy at their registry defaults (LR 0.1 for K-FAC; a multiplier of 1.0
  for the learning-rate-free methods).

Reported per task and method: the mean final validation metric (and the two seeds' values), the
epochs each seed needs to reach 95% of the best-known metric, and the mean effective LR of the
last epoch (the step size the optimizer reports with ``effective_lr()``). The best-known metric
is the best final validation metric of any run of the benchmark on that task, grid runs included.
For accuracy "reaching" means ``accuracy >= 0.95 * best``; for ``rel_mse`` (lower is better, 1.0
is predicting the mean) it means the explained fraction reaches 95% of the best one:
``1 - rel_mse >= 0.95 * (1 - best)``.

K-FAC's cost per step is measured against SGD with momentum in the same process: repetitions of
50 training steps on the task's batches, SGD and K-FAC interleaved, median per-step time of each.

Usage::

    nice -n 5 .venv/bin/python benchmarks/optimizers.py            # about 5 minutes on one core
    nice -n 5 .venv/bin/python benchmarks/optimizers.py --quick    # two tasks, one seed: a smoke run
    .venv/bin/python benchmarks/optimizers.py --out report.md

Training runs are cached in ``benchmarks/out/optimizers-cache.json`` (delete it to start over);
the timing is measured anew every time.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE / "out" / "optimizers-cache.json"

GRID = [float(10.0 ** (-4 + 0.5 * k)) for k in range(8)]  # 1e-4 .. 0.316
SEEDS = (0, 1)
TUNED = ("momentum", "adam")
DEFAULTS = ("kfac", "dog", "ldog", "prodigy")
TIMING_REPS = 7
TIMING_STEPS = 50


def _setup() -> None:
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    warnings.simplefilter("ignore", UserWarning)  # K-FAC's notice about layers it leaves alone


def train_one(task_name: str, optimizer: str, lr: float | None, seed: int) -> dict[str, Any]:
    """One `fit` run; what the report needs from its history."""
    from lrkit.tasks import get
    from lrkit.train import fit

    task = get(task_name)
    h = fit(task, optimizer, "constant", lr=lr, seed=seed, progress=False)
    per_epoch = task.steps_per_epoch()
    last = [x for x in h.lrs[-per_epoch:] if math.isfinite(x)]
    return {
        "final": h.final_metric,
        "curve": h.column("val_metric"),
        "status": h.status,
        "seconds": h.seconds,
        "last_lr": sum(last) / len(last) if last else math.nan,
    }


def step_times(task_name: str) -> dict[str, float]:
    """Median seconds per training step of SGD with momentum and of K-FAC, interleaved."""
    import torch

    from lrkit.optim import make
    from lrkit.tasks import get

    task = get(task_name)
    batches = list(task.loader(0))
    times: dict[str, list[float]] = {"momentum": [], "kfac": []}

    def steps(name: str) -> float:
        model = task.model(0)
        opt = make(name, model)
        t0 = time.perf_counter()
        for i in range(TIMING_STEPS):
            x, y = batches[i % len(batches)]
            opt.zero_grad(set_to_none=True)
            task.loss(model(x), y).backward()
            opt.step()
        return (time.perf_counter() - t0) / TIMING_STEPS

    for name in times:  # warm-up: first-call costs are not part of a step
        steps(name)
    torch.manual_seed(0)
    for _ in range(TIMING_REPS):
        for name in times:
            times[name].append(steps(name))
    return {name: statistics.median(v) for name, v in times.items()}


def _key(*job: Any) -> str:
    return json.dumps(job)


def _load() -> dict[str, Any]:
    if CACHE.exists():
        return dict(json.loads(CACHE.read_text()))
    return {}


def _save(cache: dict[str, Any]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache))
    tmp.replace(CACHE)


def _reached(curve: list[float], threshold: float, mode: str) -> int | None:
    for epoch, value in enumerate(curve, 1):
        if math.isfinite(value) and (value >= threshold if mode == "max" else 1 - value >= threshold):
            return epoch
    return None


def _fmt(x: float, digits: int = 4) -> str:
    return "diverged" if not math.isfinite(x) else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two tasks, one seed")
    ap.add_argument("--out", type=Path, help="write the Markdown report here too")
    args = ap.parse_args(argv)
    _setup()
    from lrkit.optim import get as get_optimizer
    from lrkit.tasks import get, names

    tasks = ["logreg-digits", "mlp-spirals"] if args.quick else names()
    seeds = SEEDS[:1] if args.quick else SEEDS
    cache = _load()
    jobs = [(t, o, lr, s) for t in tasks for o in TUNED for lr in GRID for s in seeds]
    jobs += [(t, o, None, s) for t in tasks for o in DEFAULTS for s in seeds]
    todo = [j for j in jobs if _key(*j) not in cache]
    t0 = time.perf_counter()
    for i, job in enumerate(todo, 1):
        cache[_key(*job)] = train_one(*job)
        if i % 20 == 0 or i == len(todo):
            print(f"  {i}/{len(todo)} runs ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            _save(cache)
    timing = {t: step_times(t) for t in tasks}
    run_seconds = sum(cache[_key(*j)]["seconds"] for j in jobs)

    lines = [
        "## Optimizers: K-FAC and learning-rate-free methods against tuned SGD and Adam",
        "",
        "Command: `nice -n 5 .venv/bin/python benchmarks/optimizers.py` (add `--out FILE` to write "
        "this report)",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, one torch thread; "
        f"{len(jobs)} training runs, {run_seconds / 60:.1f} minutes of training in all.",
        "",
        f"Each task trains for its default epochs with a constant schedule, seeds {list(seeds)}. "
        f"Oracle: the best mean final validation metric over LRs {GRID[0]:.0e} .. {GRID[-1]:.1e} "
        f"(8 points, half a decade apart). To 95%: the epoch at which each seed first reaches 95% of "
        f"the best-known metric (the best final metric of any run on the task; for rel_mse, 95% of "
        f"its explained fraction 1 - rel_mse); '-' marks a seed that never does. Effective LR: the "
        f"mean step size of the last epoch as the optimizer reports it (`effective_lr()`; the LR "
        f"itself for SGD and Adam).",
        "",
        "| task | metric | method | LR | final val metric (mean) | seeds | epochs to 95% | effective LR |",
        "|---|---|---|---:|---:|---|---|---:|",
    ]
    losses: dict[str, list[str]] = {}
    for t in tasks:
        task = get(t)
        mode = task.mode
        better = max if mode == "max" else min
        runs = {j: cache[_key(*j)] for j in jobs if j[0] == t}
        finals = [r["final"] for r in runs.values() if math.isfinite(r["final"])]
        best = better(finals)
        threshold = 0.95 * best if mode == "max" else 0.95 * (1 - best)

        def mean_final(o: str, lr: float | None, t: str = t, runs: dict[Any, Any] = runs) -> float:
            values = [runs[(t, o, lr, s)]["final"] for s in seeds]
            return statistics.fmean(values) if all(math.isfinite(v) for v in values) else math.nan

        rows: list[tuple[str, float | None]] = []
        for o in TUNED:
            scored = [(mean_final(o, lr), lr) for lr in GRID]
            scored = [(m, lr) for m, lr in scored if math.isfinite(m)]
            rows.append((o, better(scored)[1]))
        rows.append(("adam", None))
        rows += [(o, None) for o in DEFAULTS]
        tuned_best = better(mean_final(o, lr) for o, lr in rows[:2])
        for o, lr in rows:
            label = {"momentum": "SGD+momentum 0.9", "adam": "Adam"}.get(o, o)
            label += " (oracle LR)" if lr is not None else " (default)"
            shown_lr = lr if lr is not None else get_optimizer(o).default_lr
            key_lr = get_optimizer(o).default_lr if (o == "adam" and lr is None) else lr
            per_seed = [runs[(t, o, key_lr, s)] for s in seeds]
            m = mean_final(o, key_lr)
            reach = [_reached(r["curve"], threshold, mode) for r in per_seed]
            eff = statistics.fmean(r["last_lr"] for r in per_seed)
            lines.append(
                f"| {t} | {task.metric} | {label} | {shown_lr:.2g} | {_fmt(m)} | "
                f"{' / '.join(_fmt(r['final']) for r in per_seed)} | "
                f"{' / '.join('-' if e is None else str(e) for e in reach)} | {eff:.3g} |"
            )
            gap = (tuned_best - m) if mode == "max" else (m - tuned_best)
            if o in DEFAULTS or lr is None:
                points = 100 * gap if mode == "max" else 100 * gap / tuned_best
                if not math.isfinite(m) or points > 1.0:
                    unit = "points" if mode == "max" else "% rel. MSE"
                    what = "diverged" if not math.isfinite(m) else f"{points:.1f} {unit}"
                    losses.setdefault(label, []).append(f"{t} ({what})")
        lines.append(f"| {t} | | best-known | | {_fmt(best)} | | | |")

    lines += [
        "",
        "Where a method loses more than 1 point of accuracy (or 1% relative MSE) against the better "
        "of the two tuned baselines:",
        "",
    ]
    for label, where in losses.items():
        lines.append(f"- {label}: {', '.join(where)}")
    lines += [
        "",
        f"K-FAC time per step against SGD with momentum, same process, {TIMING_REPS} interleaved "
        f"repetitions of {TIMING_STEPS} steps (median; K-FAC's defaults: factors every step, "
        f"eigendecompositions every 10 steps):",
        "",
        "| task | SGD ms/step | K-FAC ms/step | K-FAC / SGD |",
        "|---|---:|---:|---:|",
    ]
    for t in tasks:
        s, k = timing[t]["momentum"], timing[t]["kfac"]
        lines.append(f"| {t} | {1e3 * s:.2f} | {1e3 * k:.2f} | **{k / s:.2f}** |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
