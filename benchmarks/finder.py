"""Finder quality: how much validation metric each LR-finder rule loses against an oracle grid.

For every built-in task x optimizer (SGD with momentum 0.9, Adam) x target schedule (constant,
one-cycle):

1. the oracle: a grid of 13 log-spaced LRs (1e-5 .. 10, half a decade apart) x 3 seeds, trained
   for the task's default epochs; the oracle's value is the best mean validation metric;
2. the finders, each run with 5 finder seeds (model init and batch order): lrkit (its default
   suggestion: the default call with validation data and the planned training length, which
   verifies candidates on the validation split within one training run's budget; its reading of
   the sweep alone; and its implementations of the classic rules),
   torch-lr-finder's steepest-gradient suggestion, and fastai's valley / minimum / steep / slide;
3. every suggestion is trained with the same seed as the finder run and scored (the one-run
   reading), and with the oracle's seeds, whose mean scores it like a grid point (the seed-mean
   reading).

Reported per rule: mean and worst regret (accuracy points; relative validation MSE in % for the
regression task), catastrophic picks (diverged, or a metric closer to a trivial predictor than to
the oracle), the spread of the suggestion over finder seeds (decades of LR), and cost (optimizer
steps of the sweep, and the finder's seconds as a fraction of one training run). Also, per
optimizer, how the interval of useful LRs read from each sweep sits against the oracle's best LRs.

Usage::

    .venv/bin/python benchmarks/finder.py                 # everything (about 20 minutes on 2 cores)
    .venv/bin/python benchmarks/finder.py --quick         # two tasks, 2 finder seeds: a smoke run
    .venv/bin/python benchmarks/finder.py --out report.md
    .venv/bin/python benchmarks/finder.py --holdout     # the tasks of benchmarks/holdout_tasks.py
    .venv/bin/python benchmarks/finder.py --sweep-share 0.2   # a variant: a shorter sweep on short runs

Results are cached in ``benchmarks/out/finder-cache.json`` (``finder-holdout-cache.json`` for
``--holdout``; delete it to start over).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
CACHE = HERE / "out" / "finder-cache.json"
#: The cache of the held-out tasks (`--holdout`), so that both runs can go on at once.
HOLDOUT_CACHE = HERE / "out" / "finder-holdout-cache.json"

OPTIMIZERS = ("momentum", "adam")
TARGETS = ("constant", "onecycle")
GRID = [float(10.0 ** (-5 + 0.5 * k)) for k in range(13)]  # 1e-5 .. 10
ORACLE_SEEDS = (0, 1, 2)
FINDER_SEEDS = (0, 1, 2, 3, 4)
LRKIT_RULES = ("valley", "minimum/10", "slide", "steepest")
#: `--sweep-share`: lrkit's sweep is this share of the planned run when that is shorter than the
#: default sweep (at least `MIN_SHARED_SWEEP` steps); None for the default sweep.
SWEEP_SHARE: float | None = None
MIN_SHARED_SWEEP = 30
ANCHOR_RULES = ("torch-lr-finder steepest", "fastai valley", "fastai minimum", "fastai steep", "fastai slide")


def _setup() -> None:
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


# -- jobs run in worker processes -------------------------------------------------------------


def job_train(task_name: str, optimizer: str, target: str, lr: float, seed: int) -> dict[str, Any]:
    from lrkit.tasks import get, train

    _setup()
    r = train(get(task_name), optimizer=optimizer, lr=lr, schedule=target, seed=seed)
    return {"metric": r.val_metric, "diverged": r.diverged, "seconds": r.seconds, "steps": r.steps}


def _finder_inputs(task_name: str, optimizer: str, seed: int) -> tuple[Any, Any, Any, Any]:
    import torch

    from lrkit.tasks import get, make_optimizer

    _setup()
    task = get(task_name)
    torch.manual_seed(seed)
    model = task.model(seed)
    return task, model, make_optimizer(optimizer, model.parameters(), 1e-3), task.loader(seed)


def _one_run_seconds(task_name: str, optimizer: str, seed: int, lr: float) -> float:
    """Seconds of one full training run in this process (the unit of the cost columns)."""
    from lrkit.tasks import get, train

    return train(get(task_name), optimizer=optimizer, lr=lr, seed=seed).seconds


def _warm_up(task_name: str, optimizer: str) -> None:
    """A few steps so that neither the finder nor the reference run pays first-call costs."""
    from lrkit.tasks import get, train

    train(get(task_name), optimizer=optimizer, lr=1e-3, epochs=1)


def job_lrkit(task_name: str, optimizer: str, seed: int, verify_target: str | None) -> dict[str, Any]:
    from lrkit.finder import find_lr

    _warm_up(task_name, optimizer)
    task, model, opt, loader = _finder_inputs(task_name, optimizer, seed)
    kwargs: dict[str, Any] = {}
    if verify_target is not None:
        run_steps = task.epochs * len(loader)
        kwargs = {"target": verify_target, "val_loader": task.loader(seed, "val"), "train_steps": run_steps}
    if SWEEP_SHARE is not None:  # the same sweep for the plain and the verified run
        kwargs["steps"] = max(MIN_SHARED_SWEEP, min(80, round(SWEEP_SHARE * task.epochs * len(loader))))
    t0 = time.perf_counter()
    r = find_lr(model, opt, task.loss, loader, seed=seed, **kwargs)
    seconds = time.perf_counter() - t0
    lr = r.suggestion if math.isfinite(r.suggestion) else 1e-3
    out = {
        "suggestions": r.suggestions,
        "suggestion": r.suggestion,
        "steps": r.steps,
        "seconds": seconds,
        "run_seconds": _one_run_seconds(task_name, optimizer, seed, lr),
        "lrs": r.lrs,
        "losses": r.losses,
        "status": r.status,
    }
    if r.verification is not None:
        out["verify_steps"] = r.verification.total_steps
        out["verify_seconds"] = r.verification.seconds
        out["candidates"] = r.verification.candidates
        out["scores"] = r.verification.scores
        out["errors"] = r.verification.errors
        out["best"] = r.verification.best
        out["horizon_factor"] = r.verification.horizon_factor
    return out


def job_anchor(task_name: str, optimizer: str, seed: int, which: str) -> dict[str, Any]:
    import _anchors

    _warm_up(task_name, optimizer)
    if which == "fastai":
        _anchors.fastai_rules([1e-3, 1e-2], [1.0, 0.5])  # import fastai before the clock starts
    task, model, opt, loader = _finder_inputs(task_name, optimizer, seed)
    t0 = time.perf_counter()
    if which == "torch-lr-finder":
        r = _anchors.torch_lr_finder_suggest(model, opt, task.loss, loader, seed=seed)
        out = {"torch-lr-finder steepest": r.get("steepest")}
    else:
        r = _anchors.fastai_suggest(model, optimizer, task.loss, loader, seed=seed)
        out = {f"fastai {k}": r.get(k) for k in ("valley", "minimum", "steep", "slide")}
    seconds = time.perf_counter() - t0
    return {
        "suggestions": out,
        "steps": r.get("steps"),
        "seconds": seconds,
        "run_seconds": _one_run_seconds(task_name, optimizer, seed, 1e-3),
    }


JOBS: dict[str, Callable[..., dict[str, Any]]] = {
    "train": job_train,
    "lrkit": job_lrkit,
    "anchor": job_anchor,
}


def _run(job: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    kind, *args = job
    try:
        return job, JOBS[kind](*args)
    except Exception as e:  # a failing finder is a result too
        return job, {"error": f"{type(e).__name__}: {e}"}


# -- the driver -------------------------------------------------------------------------------


#: Bump when lrkit's finder changes: its jobs then run again (training runs stay cached).
FINDER_VERSION = 22
#: Bump when the anchor wrappers (`_anchors.py`) change; independent of lrkit's finder, so that a
#: change to lrkit does not rerun torch-lr-finder and fastai.
ANCHOR_VERSION = 5


def _key(job: tuple[Any, ...]) -> str:
    if job[0] == "lrkit":
        job = (*job, FINDER_VERSION) if SWEEP_SHARE is None else (*job, FINDER_VERSION, "share", SWEEP_SHARE)
    elif job[0] == "anchor":
        job = (*job, ANCHOR_VERSION)
    return json.dumps(job)


def run_all(jobs: list[tuple[Any, ...]], cache: dict[str, Any], workers: int) -> None:
    todo = [j for j in dict.fromkeys(map(tuple, jobs)) if _key(j) not in cache]
    if not todo:
        return
    print(f"running {len(todo)} jobs on {workers} processes", file=sys.stderr)
    t0 = time.perf_counter()
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        for i, (job, res) in enumerate(pool.imap_unordered(_run, todo, chunksize=1), 1):
            cache[_key(job)] = res
            if i % 50 == 0 or i == len(todo):
                print(f"  {i}/{len(todo)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
                _save(cache)


def _save(cache: dict[str, Any]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache))
    tmp.replace(CACHE)


def _round_lr(lr: float) -> float:
    return float(f"{lr:.4g}")


def _suggestions(
    cache: dict[str, Any], task: str, opt: str, target: str, seed: int, anchors: bool
) -> dict[str, float | None]:
    """Every rule's pick for one finder run (None when the rule found nothing)."""
    out: dict[str, float | None] = {}
    plain = cache[_key(("lrkit", task, opt, seed, None))]
    ver = cache[_key(("lrkit", task, opt, seed, target))]
    out["lrkit"] = None if "error" in ver else ver["suggestion"]
    if "error" not in plain:
        out["lrkit sweep only"] = plain["suggestions"]["lrkit" if target == "constant" else "lrkit-peak"]
        for r in LRKIT_RULES:
            out[f"lrkit {r}"] = plain["suggestions"][r]
    if anchors:
        for which in ("torch-lr-finder", "fastai"):
            res = cache.get(_key(("anchor", task, opt, seed, which)), {})
            out.update(res.get("suggestions", {}))
    return {k: (float(v) if v is not None and math.isfinite(v) and v > 0 else None) for k, v in out.items()}


def select_suite(holdout: bool) -> list[str]:
    """The tasks of the built-in suite, or of the held-out one (whose module registers them, so
    call this before the worker processes fork), and point `CACHE` at that suite's cache."""
    global CACHE
    from lrkit.tasks import names

    if not holdout:
        return [t for t in names() if not t.startswith("holdout-")]
    import holdout_tasks

    CACHE = HOLDOUT_CACHE
    return list(holdout_tasks.NAMES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="two tasks, two finder seeds")
    ap.add_argument("--no-anchors", action="store_true", help="skip torch-lr-finder and fastai")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, help="also write the Markdown report here")
    ap.add_argument(
        "--holdout", action="store_true", help="the held-out tasks of benchmarks/holdout_tasks.py instead"
    )
    ap.add_argument(
        "--sweep-share",
        type=float,
        help="variant: lrkit's sweep is at most this share of the planned run (at least 30 steps)",
    )
    args = ap.parse_args()
    if args.sweep_share is not None:
        if not 0 < args.sweep_share <= 1:
            ap.error(f"--sweep-share must be in (0, 1], got {args.sweep_share}")
        global SWEEP_SHARE
        SWEEP_SHARE = args.sweep_share

    from lrkit.tasks import get

    tasks = select_suite(args.holdout)
    tasks = tasks[:2] if args.quick else tasks
    seeds = FINDER_SEEDS[:2] if args.quick else FINDER_SEEDS
    anchors = not args.no_anchors
    cache: dict[str, Any] = json.loads(CACHE.read_text()) if CACHE.exists() else {}

    # 1. oracle grid, finder runs
    jobs: list[tuple[Any, ...]] = []
    for t in tasks:
        for o in OPTIMIZERS:
            for tg in TARGETS:
                jobs += [("train", t, o, tg, lr, s) for lr in GRID for s in ORACLE_SEEDS]
            for s in seeds:
                jobs.append(("lrkit", t, o, s, None))
                jobs += [("lrkit", t, o, s, tg) for tg in TARGETS]
                if anchors:
                    jobs += [("anchor", t, o, s, "torch-lr-finder"), ("anchor", t, o, s, "fastai")]
    run_all(jobs, cache, args.workers)

    # 2. train every suggestion
    jobs = []
    for t in tasks:
        for o in OPTIMIZERS:
            for tg in TARGETS:
                for s in seeds:
                    for lr in _suggestions(cache, t, o, tg, s, anchors).values():
                        if lr is not None:
                            # the finder seed's own run, and the oracle's seeds for the seed-mean reading
                            jobs += [("train", t, o, tg, _round_lr(lr), s2) for s2 in (s, *ORACLE_SEEDS)]
    run_all(jobs, cache, args.workers)
    _save(cache)
    command = (" --holdout" if args.holdout else "") + (
        f" --sweep-share {SWEEP_SHARE:g}" if SWEEP_SHARE is not None else ""
    )
    report = render(cache, tasks, seeds, anchors, get, command)
    print(report)
    if args.out:
        args.out.write_text(report)


def render(
    cache: dict[str, Any],
    tasks: list[str],
    seeds: tuple[int, ...],
    anchors: bool,
    get: Callable[[str], Any],
    command: str = "",
) -> str:
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    per_config: list[str] = []
    oracle_spread: list[float] = []
    for t in tasks:
        task = get(t)
        higher = task.mode == "max"
        trivial = _trivial(task)
        for o in OPTIMIZERS:
            for tg in TARGETS:
                oracle, oracle_lr = _oracle(cache, t, o, tg, higher)
                own = _best_per_seed(cache, t, o, tg, higher)
                oracle_spread.append(math.log10(max(own) / min(own)))
                each = ", ".join(f"{lr:.0e}" for lr in own)
                per_config.append(f"| {t} | {o} | {tg} | {oracle_lr:.0e} | {oracle:.4g} | {each} |")
                picks = {s: _suggestions(cache, t, o, tg, s, anchors) for s in seeds}
                for rule in picks[seeds[0]]:
                    r = rows[rule]
                    lrs = [picks[s].get(rule) for s in seeds]
                    good = [lr for lr in lrs if lr is not None]
                    if len(good) > 1:
                        r["spread"].append(math.log10(max(good) / min(good)))
                    for s, lr in zip(seeds, lrs, strict=True):
                        if lr is None:
                            for prefix in ("", "mean_"):
                                r[prefix + "regret"].append(math.nan)
                                r[prefix + "catastrophic"].append(1.0)
                            continue
                        config = (t, o, tg, lr, higher, oracle, trivial)
                        regret, bad = _score(cache, config, (s,))
                        r["regret"].append(regret)
                        r["regret_cls" if higher else "regret_reg"].append(regret)
                        r["catastrophic"].append(float(bad))
                        regret, bad = _score(cache, config, ORACLE_SEEDS)
                        r["mean_regret"].append(regret)
                        r["mean_regret_cls" if higher else "mean_regret_reg"].append(regret)
                        r["mean_catastrophic"].append(float(bad))
                        r["log_error"].append(abs(math.log10(lr / oracle_lr)))
                        cost = _cost(cache, rule, t, o, tg, s)
                        if cost is not None:
                            r["steps"].append(cost[0])
                            r["fraction"].append(cost[1])
                            r["verify_fraction"].append(cost[2])
    lines = [
        "One-run reading: every pick trained once, with its finder run's seed.",
        "",
        "| rule | mean regret | worst regret | worst, classification (points) "
        "| worst, regression (% rel. MSE) | catastrophic | seed spread (decades, mean / max) "
        "| distance to oracle LR (decades, mean) | cost (steps) | sweep (x one run) "
        "| verification (x one run) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rule, r in rows.items():
        reg = np.asarray(r["regret"])
        finite = reg[np.isfinite(reg)]
        sp = r["spread"]
        lines.append(
            f"| {rule} | {np.mean(finite):.2f} | {np.max(finite):.1f} | {_worst(r['regret_cls'])} "
            f"| {_worst(r['regret_reg'])} | {int(sum(r['catastrophic']))}"
            f"/{len(r['catastrophic'])} | {np.mean(sp) if sp else 0:.2f} / {np.max(sp) if sp else 0:.2f} "
            f"| {np.mean(r['log_error']):.2f} | {np.mean(r['steps']) if r['steps'] else math.nan:.0f} "
            f"| {np.nanmean(r['fraction']) if r['fraction'] else math.nan:.2f} "
            f"| {_fmt_fraction(r['verify_fraction'])} |"
        )
    lines += [
        "",
        "Seed-mean reading: every pick scored like the oracle's grid points, by the mean validation "
        f"metric of runs with the oracle's seeds {', '.join(map(str, ORACLE_SEEDS))} at the picked LR "
        "(a run whose metric is not finite counts as 0 accuracy, or a relative MSE of 10, in the "
        "mean; the pick is catastrophic if any of those runs diverges or the mean is closer to a "
        "trivial predictor than to the oracle), so that the regret measures the choice of LR rather "
        "than one run's luck.",
        "",
        "| rule | mean regret | worst regret | worst, classification (points) "
        "| worst, regression (% rel. MSE) | catastrophic |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for rule, r in rows.items():
        reg = np.asarray(r["mean_regret"])
        finite = reg[np.isfinite(reg)]
        lines.append(
            f"| {rule} | {np.mean(finite):.2f} | {np.max(finite):.1f} | {_worst(r['mean_regret_cls'])} "
            f"| {_worst(r['mean_regret_reg'])} "
            f"| {int(sum(r['mean_catastrophic']))}/{len(r['mean_catastrophic'])} |"
        )
    head = [
        "## LR finder quality",
        "",
        f"Command: `.venv/bin/python benchmarks/finder.py{command}` — machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one thread per process.",
        "",
        f"{len(tasks)} tasks x {len(OPTIMIZERS)} optimizers x {len(TARGETS)} targets = "
        f"{len(tasks) * len(OPTIMIZERS) * len(TARGETS)} configurations, {len(seeds)} finder seeds each. "
        "Regret: accuracy points lost against the oracle grid's best mean validation metric (for "
        "regression: % relative validation MSE). Catastrophic: the run diverged, or its metric is "
        "closer to a trivial predictor than to the oracle.",
        "",
    ]
    tail = [
        "",
        *_interval_table(cache, tasks, seeds, get),
        "",
        f"Oracle (best mean over {len(ORACLE_SEEDS)} seeds of the {len(GRID)}-point grid; and the best "
        f"grid LR of each seed's runs alone (the smallest of equal ones), seeds "
        f"{', '.join(map(str, ORACLE_SEEDS))}, which differ "
        f"across the seeds by {np.mean(oracle_spread):.2f} decades on average, at most "
        f"{max(oracle_spread):.2f}):",
        "",
        "| task | optimizer | target | best LR | metric | best LR of each seed |",
        "|---|---|---|---:|---:|---|",
        *per_config,
    ]
    return "\n".join(head + lines + tail) + "\n"


def _interval_table(
    cache: dict[str, Any], tasks: list[str], seeds: tuple[int, ...], get: Callable[[str], Any]
) -> list[str]:
    """How the sweep's interval of useful LRs (`FinderResult.interval`, read again from each
    cached sweep) sits against the oracle's best LRs, per optimizer."""
    from lrkit.finder import progress_interval, smooth

    lines = [
        "Interval of useful LRs (`FinderResult.interval`, read from each seed's sweep): its width, "
        "how far its lower end moves across the finder seeds, and how often it contains the "
        "oracle's best constant LR and best one-cycle peak.",
        "",
        "| optimizer | width (decades, mean / max) | lower end's seed spread (decades, mean / max) "
        "| contains best constant LR | contains best one-cycle peak |",
        "|---|---:|---:|---:|---:|",
    ]
    for o in OPTIMIZERS:
        width: list[float] = []
        spread: list[float] = []
        hits = {tg: 0 for tg in TARGETS}
        n = 0
        for t in tasks:
            higher = get(t).mode == "max"
            best = {tg: _oracle(cache, t, o, tg, higher)[1] for tg in TARGETS}
            lows = []
            for s in seeds:
                res = cache[_key(("lrkit", t, o, s, None))]
                if "error" in res:
                    continue
                lo, hi = progress_interval(np.asarray(res["lrs"]), smooth(res["losses"]))
                n += 1
                if not (math.isfinite(lo) and math.isfinite(hi)):
                    continue
                lows.append(lo)
                width.append(math.log10(hi / lo))
                for tg in TARGETS:
                    hits[tg] += lo <= best[tg] <= hi
            if len(lows) > 1:
                spread.append(math.log10(max(lows) / min(lows)))
        lines.append(
            f"| {o} | {np.mean(width):.2f} / {np.max(width):.2f} | {np.mean(spread):.2f} / "
            f"{np.max(spread):.2f} | {hits['constant']}/{n} | {hits['onecycle']}/{n} |"
        )
    return lines


def _trivial(task: Any) -> float:
    """The metric of a trivial predictor: the majority class's accuracy, or a relative MSE of 1."""
    if task.mode != "max":
        return 1.0
    yv = task.data().val[1]
    return float(np.bincount(yv.numpy()).max() / len(yv))


def _oracle(cache: dict[str, Any], t: str, o: str, tg: str, higher: bool) -> tuple[float, float]:
    """The oracle grid's best mean metric over `ORACLE_SEEDS` and the LR that reaches it."""
    means = []
    for lr in GRID:
        vals = [cache[_key(("train", t, o, tg, lr, s))]["metric"] for s in ORACLE_SEEDS]
        vals = [v if math.isfinite(v) else (0.0 if higher else math.inf) for v in vals]
        means.append(float(np.mean(vals)))
    i_best = int(np.argmax(means) if higher else np.argmin(means))
    return means[i_best], GRID[i_best]


def _best_per_seed(cache: dict[str, Any], t: str, o: str, tg: str, higher: bool) -> list[float]:
    """The best grid LR of each oracle seed's own runs (the smallest of equal ones)."""
    out = []
    for s in ORACLE_SEEDS:
        vals = [cache[_key(("train", t, o, tg, lr, s))]["metric"] for lr in GRID]
        vals = [v if math.isfinite(v) else (-math.inf if higher else math.inf) for v in vals]
        out.append(GRID[int(np.argmax(vals) if higher else np.argmin(vals))])
    return out


def _score(cache: dict[str, Any], config: tuple[Any, ...], run_seeds: tuple[int, ...]) -> tuple[float, bool]:
    """(regret, catastrophic) of the mean metric of the runs with `run_seeds` at a picked LR."""
    t, o, tg, lr, higher, oracle, trivial = config
    runs = [cache[_key(("train", t, o, tg, _round_lr(lr), s))] for s in run_seeds]
    ms = [r["metric"] if math.isfinite(r["metric"]) else (0.0 if higher else 10.0) for r in runs]
    m = float(np.mean(ms))
    if higher:
        regret, bad = 100 * (oracle - m), m < (trivial + oracle) / 2
    else:
        regret, bad = 100 * (m - oracle) / oracle, m > (trivial + oracle) / 2
    return regret, bad or any(r["diverged"] or not math.isfinite(r["metric"]) for r in runs)


def _worst(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    return f"{max(finite):.1f}" if finite else "-"


def _fmt_fraction(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    return f"{np.mean(finite):.2f}" if finite else "-"


def _cost(
    cache: dict[str, Any], rule: str, t: str, o: str, tg: str, s: int
) -> tuple[float, float, float] | None:
    """(optimizer steps, sweep seconds and verification seconds as fractions of one training
    run) that the finder behind `rule` spent."""
    verify = math.nan
    if rule == "lrkit":
        res = cache[_key(("lrkit", t, o, s, tg))]
        steps = res["steps"] + res.get("verify_steps", 0)
        verify = res.get("verify_seconds", 0.0)
    elif rule.startswith("lrkit"):
        res = cache[_key(("lrkit", t, o, s, None))]
        steps = res["steps"]
    else:
        which = "torch-lr-finder" if rule.startswith("torch-lr-finder") else "fastai"
        res = cache.get(_key(("anchor", t, o, s, which)), {})
        if not res or "error" in res or res.get("steps") is None:
            return None
        steps = res["steps"]
    run = res.get("run_seconds")
    if not run:
        return (steps, math.nan, math.nan)
    sweep = res["seconds"] - (0.0 if math.isnan(verify) else verify)
    return (steps, sweep / run, verify / run)


if __name__ == "__main__":
    main()
