"""Tuning efficiency: the best validation metric each search reaches against the epochs it spends.

Only the learning rate is tuned (Adam, constant LR, the task's default epochs, hold-out
validation), on every built-in task, for 3 seeds (the seed draws the model's initial weights, the
batch order and the sampler's choices):

1. the oracle: a dense grid of 31 log-spaced LRs over [1e-5, 1] (six per decade); its best
   validation metric is the value to reach;
2. the baseline: a 16-point grid over the same range (Optuna's GridSampler); its cost, 16 full
   runs, is the 100% of the compute axis;
3. every search (grid, random, TPE, GP), without pruning and with successive halving (ASHA, rungs
   at a ninth and a third of the epochs), over the same wide range, and over lrkit's ``auto``
   space (half a decade either side of the LR range test's verified suggestion, which is the first
   trial; the range test's own steps are charged to the search), run until it has spent 50% of
   the grid's epochs.

A search "reaches" the oracle when its best complete trial is within 0.5 accuracy points of it,
or within 2% relative validation MSE for the regression task. Reported per task and search: the
epochs spent until then as a share of the grid's (median of the seeds, and the worst seed; ">50%"
when it did not get there), and the regret of the best trial after 25% of the grid's epochs.
Two readings: "one run" scores the search's best trial by its own training run against the best
single run of the dense grid for that seed; the curve reading scores the LR the search picked on
the dense grid's mean over 5 seeds (interpolated in log LR) against that curve's best point.

Usage::

    .venv/bin/python benchmarks/tuning.py              # everything (about 30 minutes on 2 cores)
    .venv/bin/python benchmarks/tuning.py --quick      # two tasks, one seed: a smoke run
    .venv/bin/python benchmarks/tuning.py --out report.md

Results are cached in ``benchmarks/out/tuning-cache.json`` (delete it to start over).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "out" / "tuning-cache.json"
VERSION = 1

TASKS = ("logreg-digits", "mlp-digits", "cnn-digits", "mlp-diabetes", "lstm-sequence", "mlp-spirals")
SEEDS = (0, 1, 2)
#: Seeds of the dense grid's mean curve, which scores the searches' picks: more than the searches'
#: own seeds, so that the curve's noise does not decide the verdict.
CURVE_SEEDS = (0, 1, 2, 3, 4)
LOW, HIGH = 1e-5, 1.0
ORACLE = [float(v) for v in np.geomspace(LOW, HIGH, 31)]
GRID_POINTS = 16
STRATEGIES = ("grid", "random", "tpe", "gp")
PRUNERS = ("none", "asha")
SPACES = ("wide", "auto")
CAP = 0.5  # searches stop after this share of the grid's epochs
AT = 0.25  # the target's budget


def _setup() -> None:
    import optuna
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def job_oracle(task_name: str, lr: float, seed: int) -> dict[str, Any]:
    from lrkit.tasks import get
    from lrkit.tune._evaluate import Config, evaluate

    _setup()
    task = get(task_name)
    t0 = time.perf_counter()
    out = evaluate(task, Config("adam", lr, "constant"), epochs=task.epochs, seed=seed)
    return {"value": out.value, "seconds": time.perf_counter() - t0}


def job_search(task_name: str, space_kind: str, strategy: str, pruner: str, seed: int) -> dict[str, Any]:
    import optuna

    from lrkit.tasks import get
    from lrkit.tune._space import LogFloat
    from lrkit.tune._tune import Objective, Plan, auto_space, make_pruner, make_sampler

    _setup()
    task = get(task_name)
    grid_epochs = GRID_POINTS * task.epochs
    spent = 0.0
    t0 = time.perf_counter()
    if space_kind == "auto":
        space, first, found = auto_space(task, "adam", "constant", seed=seed)
        v = found.verification
        steps = found.steps + (0 if v is None else v.total_steps)
        spent = steps / task.steps_per_epoch()
    else:
        space = {"lr": LogFloat(LOW, HIGH)}
    plan = Plan(
        task=task_name, metric=task.metric, mode=task.mode,
        space={k: v.to_config() for k, v in space.items()},
        strategy=strategy, pruner=pruner, epochs=task.epochs, cv=None, seed=seed, optimizer="adam",
        schedule="constant", grid_points=GRID_POINTS,
    )  # fmt: skip
    study = optuna.create_study(
        direction=plan.direction(), sampler=make_sampler(plan), pruner=make_pruner(plan)
    )
    if space_kind == "auto":
        study.enqueue_trial(first)  # as tune(space="auto") does: the range test's pick comes first
    objective = Objective(plan, task)
    curve: list[tuple[float, float | None, float, str]] = []  # (epochs spent, value, lr, state)
    start_spent = spent

    def track(study: Any, t: Any) -> None:
        nonlocal spent
        spent += float(t.user_attrs.get("epochs", 0))
        value = None if t.state.name != "COMPLETE" else float(t.value)
        curve.append((spent, value, float(t.params["lr"]), t.state.name))
        if spent >= CAP * grid_epochs:
            study.stop()

    n_trials = GRID_POINTS if strategy == "grid" else 200
    study.optimize(objective, n_trials=n_trials, callbacks=[track])
    return {"curve": curve, "finder_epochs": start_spent, "seconds": time.perf_counter() - t0}


# -- orchestration ------------------------------------------------------------------------------


def _load_cache() -> dict[str, Any]:
    if CACHE.exists():
        data = json.loads(CACHE.read_text())
        if data.get("version") == VERSION:
            return data
    return {"version": VERSION, "oracle": {}, "search": {}}


def _save_cache(cache: dict[str, Any]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache))
    tmp.replace(CACHE)


def _run(jobs: dict[str, tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]], store: dict[str, Any],
         cache: dict[str, Any], workers: int, label: str) -> None:  # fmt: skip
    todo = {k: v for k, v in jobs.items() if k not in store}
    if not todo:
        return
    print(f"{label}: {len(todo)} jobs on {workers} processes", flush=True)
    t0 = time.time()
    with mp.get_context("fork").Pool(workers, maxtasksperchild=20) as pool:
        pending = {k: pool.apply_async(fn, args) for k, (fn, args) in todo.items()}
        for i, (k, r) in enumerate(pending.items()):
            store[k] = r.get()
            if (i + 1) % 10 == 0 or i + 1 == len(pending):
                _save_cache(cache)
                print(f"  {i + 1}/{len(pending)} ({time.time() - t0:.0f} s)", flush=True)


def _regret(task_mode: str, oracle: float, value: float | None) -> float:
    """Accuracy points below the oracle, or % relative validation MSE above it."""
    if value is None or not math.isfinite(value):
        return math.inf
    if task_mode == "max":
        return 100.0 * (oracle - value)
    return 100.0 * (value - oracle) / oracle


def _analyse(
    curve: list[list[Any]],
    mode: str,
    oracle: float,
    grid_epochs: float,
    tol: float,
    score: Callable[[float, float], float | None] | None = None,
) -> tuple[float, float]:
    """(share of the grid's epochs spent until within `tol` of the oracle, regret at AT).

    The search's pick after each trial is its best complete trial by its own measurement; it is
    scored by that measurement, or by ``score(lr, value)`` when given.
    """
    best: float | None = None
    best_lr = math.nan
    reached = math.inf
    at = math.inf
    better = max if mode == "max" else min
    for spent, value, lr, state in curve:
        if state == "COMPLETE" and value is not None and (best is None or better(best, value) == value):
            best, best_lr = value, lr
        regret = _regret(mode, oracle, best if score is None or best is None else score(best_lr, best))
        if spent <= AT * grid_epochs + 1e-9:
            at = regret
        if regret <= tol and math.isinf(reached):
            reached = spent / grid_epochs
    return reached, at


def _mean_curve(cache: dict[str, Any], task: str, seeds: tuple[int, ...]) -> Callable[[float, float], float]:
    """The oracle grid's seed-mean metric as a function of the LR (linear in log LR between points).

    Scoring a search's chosen LR on this curve measures how good the choice is without the luck
    of one training run (the best of 31 noisy single-seed runs is biased upwards).
    """
    means = []
    for lr in ORACLE:
        values = [cache["oracle"][f"{task}|{lr:.6g}|{s}"]["value"] for s in seeds]
        means.append(float(np.mean(values)) if all(math.isfinite(v) for v in values) else math.nan)
    xs, ys = np.log10(ORACLE), np.array(means)
    ok = np.isfinite(ys)

    def at(lr: float, _: float) -> float:
        return float(np.interp(math.log10(lr), xs[ok], ys[ok]))

    return at


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="two tasks, one seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args()
    tasks = TASKS[:2] if args.quick else TASKS
    seeds = SEEDS[:1] if args.quick else SEEDS
    curve_seeds = seeds if args.quick else CURVE_SEEDS
    curve_name = f"{len(curve_seeds)}-seed curve"
    cache = _load_cache()

    from lrkit.tasks import get

    oracle_jobs = {
        f"{t}|{lr:.6g}|{s}": (job_oracle, (t, lr, s)) for t in tasks for lr in ORACLE for s in curve_seeds
    }
    _run(oracle_jobs, cache["oracle"], cache, args.workers, "oracle grid")
    searches = {
        f"{t}|{sp}|{st}|{pr}|{s}": (job_search, (t, sp, st, pr, s))
        for t in tasks for sp in SPACES for st in STRATEGIES for pr in PRUNERS for s in seeds
        if not (sp == "auto" and st == "grid")
    }  # fmt: skip
    _run(searches, cache["search"], cache, args.workers, "searches")

    def pct(x: float) -> str:
        return f">{CAP:.0%}" if math.isinf(x) else f"{x:.0%}"

    def reg(x: float) -> str:
        return "-" if math.isinf(x) else f"{x:.2f}"

    lines = [
        "| task | space | strategy | pruner | one run: epochs to reach | one run: regret at 25% "
        f"| {curve_name}: epochs to reach | {curve_name}: regret at 25% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts: dict[str, dict[str, list[bool]]] = {"one run": {}, curve_name: {}}
    oracle_lines = []
    for t in tasks:
        task = get(t)
        tol = 0.5 if task.mode == "max" else 2.0
        grid_epochs = GRID_POINTS * task.epochs
        better = max if task.mode == "max" else min
        oracles = {}
        for s in seeds:
            values = [cache["oracle"][f"{t}|{lr:.6g}|{s}"]["value"] for lr in ORACLE]
            oracles[s] = better(v for v in values if math.isfinite(v))
        curve_at = _mean_curve(cache, t, curve_seeds)
        curve_oracle = better(curve_at(lr, 0.0) for lr in ORACLE)
        unit = "pts" if task.mode == "max" else "%"
        oracle_lines.append(
            f"| {t} | {task.metric} | {statistics.mean(oracles.values()):.4g} | {curve_oracle:.4g} | "
            f"{'0.5 points' if task.mode == 'max' else '2% relative'} |"
        )
        for sp in SPACES:
            for st in STRATEGIES:
                for pr in PRUNERS:
                    if sp == "auto" and st == "grid":
                        continue
                    cells = []
                    for reading in ("one run", curve_name):
                        reached, at = [], []
                        for s in seeds:
                            curve = cache["search"][f"{t}|{sp}|{st}|{pr}|{s}"]["curve"]
                            if reading == "one run":
                                r, a = _analyse(curve, task.mode, oracles[s], grid_epochs, tol)
                            else:
                                r, a = _analyse(curve, task.mode, curve_oracle, grid_epochs, tol, curve_at)
                            reached.append(r)
                            at.append(a)
                        med = statistics.median(reached)
                        verdicts[reading].setdefault(f"{sp}/{st}/{pr}", []).append(med <= AT)
                        cells.append(f"{pct(med)} ({pct(max(reached))})")
                        cells.append(f"{reg(statistics.median(at))} ({reg(max(at))}) {unit}")
                    lines.append(f"| {t} | {sp} | {st} | {pr} | " + " | ".join(cells) + " |")
    lines = [
        "| task | metric | oracle: best single run (mean of seeds) "
        f"| oracle: best of the {len(curve_seeds)}-seed mean curve "
        "| reached when within |",
        "|---|---|---|---|---|",
        *oracle_lines,
        "",
        "Each cell: median over seeds (worst seed in brackets).",
        "",
        *lines,
    ]
    for reading, verdict in verdicts.items():
        head = f"Reading '{reading}': searches whose median seed reached the oracle within 25% of the grid's"
        lines += ["", head + " epochs:", ""]
        for key, oks in verdict.items():
            lines.append(f"- {key}: {sum(oks)}/{len(oks)} tasks{' (on every task)' if all(oks) else ''}")
    machine = f"{platform.machine()}, {mp.cpu_count()} cores, Python {platform.python_version()}"
    report = "\n".join(lines) + f"\n\nMachine: {machine}.\n"
    print(report)
    if args.out is not None:
        args.out.write_text(report)


if __name__ == "__main__":
    sys.exit(main())
