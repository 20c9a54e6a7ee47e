"""Scheduler overhead: `ScheduleLR.step()` against torch's own schedulers, and vectorized evaluation.

Usage::

    .venv/bin/python benchmarks/overhead.py            # full run
    .venv/bin/python benchmarks/overhead.py --quick    # smoke run (few, short repetitions)
    .venv/bin/python benchmarks/overhead.py --out overhead.md   # also write the tables to a file

Part 1 times only ``scheduler.step()`` (each call is bracketed by ``time.perf_counter_ns``); the
optimizer's ``step()`` runs between scheduler steps, untimed, so that the applied-step hook and
the optimizer's state updates happen as in training. Nothing is subtracted. The two contestants
of a row are interleaved (torch, lrkit, lrkit, torch, torch, lrkit, ...), each repetition on a
fresh optimizer and scheduler over the same steps, and the median repetition is reported.
A last column checks that both sides write the same LRs (and momenta), so that the comparison
is of equal work.

Part 2 times ``schedule(np.arange(10**6))``, the vectorized evaluation, and the evaluation of
one aligned block of ``BLOCK`` steps, which is what `ScheduleLR` computes once per block.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
    StepLR,
)

import lrkit
from lrkit.adapters.torch import BLOCK, ScheduleLR
from lrkit.schedules import Schedule, parse

LR = 0.1
MOMENTUM = 0.9
N_PARAMS = 4
PARAM_SIZE = 256

MakeScheduler = Callable[[Optimizer], LRScheduler]


@dataclass(frozen=True)
class Pair:
    """One row of the step() table: a torch scheduler and the lrkit schedule that matches it."""

    torch_label: str
    lrkit_spec: str
    make_torch: MakeScheduler
    momentum: bool = False


@dataclass(frozen=True)
class PairResult:
    pair: Pair
    torch_us: list[float]
    lrkit_us: list[float]
    max_rel_lr: float
    max_abs_mom: float | None


# -- machine -------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line() -> str:
    cores = os.cpu_count()
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    return (
        f"CPU: {cpu_model()}, {cores} logical cores ({usable} usable), torch threads: "
        f"{torch.get_num_threads()}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"lrkit {lrkit.__version__ if hasattr(lrkit, '__version__') else 'dev'}"
    )


def timer_overhead_ns(n: int = 200_000) -> float:
    """Median cost of one ``perf_counter_ns()`` pair, which every timed step() includes."""
    clock = time.perf_counter_ns
    samples: list[float] = []
    for _ in range(5):
        total = 0
        for _ in range(n):
            t0 = clock()
            total += clock() - t0
        samples.append(total / n)
    return statistics.median(samples)


# -- the contestants -----------------------------------------------------------------------------


def make_optimizer() -> Optimizer:
    """SGD with momentum over a small list of parameters, with gradients set."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(PARAM_SIZE)) for _ in range(N_PARAMS)]
    for p in params:
        p.grad = 1e-3 * torch.randn(PARAM_SIZE, generator=gen)
    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)


def pairs(n: int) -> list[Pair]:
    """The rows, for a run of `n` scheduler steps (every schedule is `n` steps long)."""
    milestones = [n * 3 // 10, n * 6 // 10, n * 9 // 10]
    period = max(n // 10, 2)
    half = max(n // 20, 1)
    warm = 100 if n > 400 else max(n // 4, 1)

    def cosine_factor(t: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(t, n) / n))

    return [
        Pair(
            "StepLR(step_size=30, gamma=0.1)",
            "step(0.1, every=30, factor=0.1)",
            lambda o: StepLR(o, step_size=30, gamma=0.1),
        ),
        Pair(
            f"MultiStepLR(milestones={milestones}, gamma=0.1)",
            f"multistep(0.1, milestones={milestones}, factor=0.1)",
            lambda o: MultiStepLR(o, milestones=milestones, gamma=0.1),
        ),
        Pair(
            "ExponentialLR(gamma=0.999)",
            "exponential(0.1, factor=0.999)",
            lambda o: ExponentialLR(o, gamma=0.999),
        ),
        Pair(
            f"CosineAnnealingLR(T_max={n})",
            f"cosine(0.1, steps={n})",
            lambda o: CosineAnnealingLR(o, T_max=n),
        ),
        Pair(
            f"CosineAnnealingWarmRestarts(T_0={period}, T_mult=2)",
            f"sgdr(0.1, period={period}, mul=2)",
            lambda o: CosineAnnealingWarmRestarts(o, T_0=period, T_mult=2),
        ),
        Pair(
            f"CyclicLR(0.001, 0.1, step_size_up={half}), cycle_momentum",
            f"cyclic(0.001, 0.1, half={half}, momentum_range=[0.8, 0.9])",
            lambda o: CyclicLR(
                o,
                base_lr=0.001,
                max_lr=0.1,
                step_size_up=half,
                cycle_momentum=True,
                base_momentum=0.8,
                max_momentum=0.9,
            ),
            momentum=True,
        ),
        Pair(
            f"OneCycleLR(max_lr=0.1, total_steps={n + 1}), cycle_momentum",
            f"onecycle(0.1, steps={n + 1}, momentum_range=[0.85, 0.95])",
            lambda o: OneCycleLR(o, max_lr=0.1, total_steps=n + 1, cycle_momentum=True),
            momentum=True,
        ),
        Pair(
            f"SequentialLR(LinearLR({warm}), CosineAnnealingLR(T_max={n}))",
            f"warmup({warm}) >> cosine(0.1, steps={n})",
            lambda o: SequentialLR(
                o,
                [
                    LinearLR(o, start_factor=1.0 / (warm + 1), end_factor=1.0, total_iters=warm),
                    CosineAnnealingLR(o, T_max=n),
                ],
                milestones=[warm],
            ),
        ),
        Pair(
            "LambdaLR(python lambda: cosine)",
            f"cosine(0.1, steps={n})",
            lambda o: LambdaLR(o, lambda t: cosine_factor(t)),
        ),
    ]


def make_lrkit(spec: str) -> MakeScheduler:
    schedule = parse(spec)

    def make(o: Optimizer) -> LRScheduler:
        return ScheduleLR(o, schedule)

    return make


# -- part 1: step() ------------------------------------------------------------------------------


def time_steps(make: MakeScheduler, steps: int) -> float:
    """Microseconds per ``scheduler.step()`` over `steps` steps on a fresh optimizer."""
    opt = make_optimizer()
    sched = make(opt)
    clock = time.perf_counter_ns
    total = 0
    gc.collect()
    gc.disable()
    try:
        for _ in range(steps):
            opt.step()
            t0 = clock()
            sched.step()
            total += clock() - t0
    finally:
        gc.enable()
    return total / steps / 1e3


def trace(make: MakeScheduler, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """LR and momentum of every param group after construction and after each step."""
    opt = make_optimizer()
    sched = make(opt)
    lrs: list[list[float]] = []
    moms: list[list[float]] = []

    def record() -> None:
        lrs.append([float(g["lr"]) for g in opt.param_groups])
        moms.append([float(g["momentum"]) for g in opt.param_groups])

    record()
    for _ in range(steps):
        opt.step()
        sched.step()
        record()
    return np.array(lrs), np.array(moms)


def parity(pair: Pair, steps: int) -> tuple[float, float | None]:
    """Largest relative LR difference and largest absolute momentum difference, torch vs lrkit."""
    lr_t, mom_t = trace(pair.make_torch, steps)
    lr_k, mom_k = trace(make_lrkit(pair.lrkit_spec), steps)
    scale = np.maximum(np.maximum(np.abs(lr_t), np.abs(lr_k)), np.finfo(np.float64).tiny)
    rel = float(np.max(np.abs(lr_t - lr_k) / scale))
    mom = float(np.max(np.abs(mom_t - mom_k))) if pair.momentum else None
    return rel, mom


def bench_pair(pair: Pair, steps: int, reps: int) -> PairResult:
    make_k = make_lrkit(pair.lrkit_spec)
    # one untimed repetition of each, to warm caches and lazy imports
    time_steps(pair.make_torch, min(steps, 500))
    time_steps(make_k, min(steps, 500))
    torch_us: list[float] = []
    lrkit_us: list[float] = []
    for r in range(reps):
        order = ((pair.make_torch, torch_us), (make_k, lrkit_us))
        for make, out in order if r % 2 == 0 else order[::-1]:
            out.append(time_steps(make, steps))
    rel, mom = parity(pair, steps)
    return PairResult(pair, torch_us, lrkit_us, rel, mom)


# -- part 2: vectorized evaluation ---------------------------------------------------------------


def plateau_schedule() -> Schedule:
    """A warmup into reduce-on-plateau that has already reduced three times."""
    s = parse("warmup(1000) >> plateau(0.1, factor=0.5, patience=2)")
    step = 1000
    for k in range(12):
        s = s.observe(float(step), 1.0 if k == 0 else 2.0)
        step += 20_000
    return s


def vector_cases() -> list[tuple[str, Schedule]]:
    specs = [
        "cosine(0.1, steps=1000000)",
        "onecycle(0.1, steps=1000000)",
        "warmup(1000) >> cosine(0.1, steps=999000)",
        "sgdr(0.1, period=1000, mul=2)",
        "sgdr(0.1, period=1000)",
    ]
    cases = [(s, parse(s)) for s in specs]
    p = plateau_schedule()
    cases.append((f"{p.fresh()} (3 reductions)", p))
    return cases


def time_call(fn: Callable[[], object], runs: int, inner: int = 1) -> list[float]:
    """Seconds per call of `fn`: `runs` samples, each the mean of `inner` back-to-back calls."""
    out: list[float] = []
    fn()
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            for _ in range(inner):
                fn()
            out.append((time.perf_counter_ns() - t0) / 1e9 / inner)
    finally:
        gc.enable()
    return out


def vector_row(label: str, schedule: Schedule, n: int, runs: int) -> tuple[str, float, float]:
    """Seconds for ``schedule(np.arange(n))`` and for one aligned block, medians of `runs`."""
    steps = np.arange(n)
    block = np.arange(BLOCK, 2 * BLOCK, dtype=np.float64)

    def full() -> object:
        return schedule(steps)

    def one_block() -> object:
        return schedule.evaluate(block), schedule.evaluate_momentum(block)

    return (
        label,
        statistics.median(time_call(full, runs)),
        statistics.median(time_call(one_block, runs, inner=200)),
    )


def bench_vector(n: int, runs: int) -> list[tuple[str, float, float]]:
    return [vector_row(label, s, n, runs) for label, s in vector_cases()]


# -- report --------------------------------------------------------------------------------------


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def render(
    step_rows: list[PairResult],
    vec_rows: list[tuple[str, float, float]],
    steps: int,
    reps: int,
    vec_n: int,
    vec_runs: int,
    timer_ns: float,
    command: str,
) -> str:
    lines = [
        "## Scheduler overhead",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_line()}",
        "",
        f"### `scheduler.step()`: {reps} interleaved repetitions of {steps} steps, median",
        "",
        f"SGD(momentum={MOMENTUM}) over {N_PARAMS} tensors of {PARAM_SIZE}; `optimizer.step()` runs "
        f"between scheduler steps and is not timed. Each timed call includes one "
        f"`perf_counter_ns()` pair ({timer_ns:.0f} ns on this machine, not subtracted). "
        "Quartiles of the repetitions in brackets. Ratio < 1: lrkit is faster.",
        "",
        "| torch scheduler | lrkit schedule | torch us/step | lrkit us/step | lrkit/torch "
        "| max rel. LR diff | max momentum diff |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in step_rows:
        t1, tm, t3 = quartiles(r.torch_us)
        k1, km, k3 = quartiles(r.lrkit_us)
        mom = "-" if r.max_abs_mom is None else f"{r.max_abs_mom:.1e}"
        lines.append(
            f"| `{r.pair.torch_label}` | `{r.pair.lrkit_spec}` | {tm:.2f} [{t1:.2f}, {t3:.2f}] "
            f"| {km:.2f} [{k1:.2f}, {k3:.2f}] | **{km / tm:.2f}** | {r.max_rel_lr:.1e} | {mom} |"
        )
    ratios = [statistics.median(r.lrkit_us) / statistics.median(r.torch_us) for r in step_rows]
    slower = [r.pair.torch_label for r, q in zip(step_rows, ratios, strict=True) if q > 1.0]
    lines += [
        "",
        f"Geometric mean of lrkit/torch: {math.exp(statistics.fmean(math.log(q) for q in ratios)):.2f}; "
        f"lrkit slower than torch in {len(slower)} of {len(ratios)} rows.",
        "",
        f"### Vectorized evaluation: `s(np.arange({vec_n}))`, median of {vec_runs} runs",
        "",
        f"The last column is the evaluation of one aligned block of {BLOCK} steps (LR and momentum), "
        f"which `ScheduleLR` does once every {BLOCK} steps (mean of 200 back-to-back calls, median "
        f"of {vec_runs} runs; warm caches).",
        "",
        f"| schedule | ms for {vec_n} steps | ns/step | us per {BLOCK}-step block |",
        "|---|---:|---:|---:|",
    ]
    for label, full, blk in vec_rows:
        lines.append(f"| `{label}` | {full * 1e3:.1f} | {full / vec_n * 1e9:.1f} | {blk * 1e6:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Scheduler overhead: ScheduleLR.step() against torch's schedulers, and "
        "vectorized evaluation."
    )
    ap.add_argument("--quick", action="store_true", help="few, short repetitions (a smoke run)")
    ap.add_argument("--out", metavar="FILE", help="also write the Markdown report to FILE")
    ap.add_argument("--steps", type=int, help="scheduler steps per repetition (default 5000)")
    ap.add_argument("--reps", type=int, help="repetitions per contestant (default 11)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    gc.freeze()  # what is alive now is never collected: keeps gc.collect() between repetitions short
    steps = args.steps or (500 if args.quick else 5000)
    reps = args.reps or (3 if args.quick else 11)
    vec_n = 10**5 if args.quick else 10**6
    vec_runs = 3 if args.quick else 9
    if steps < 2 or reps < 1:
        ap.error("--steps must be >= 2 and --reps >= 1")

    given = sys.argv[1:] if argv is None else argv
    command = shlex.join([".venv/bin/python", "benchmarks/overhead.py", *given])
    timer_ns = timer_overhead_ns()
    step_rows = []
    for pair in pairs(steps):
        res = bench_pair(pair, steps, reps)
        print(
            f"  {pair.torch_label}: torch {statistics.median(res.torch_us):.2f} us, "
            f"lrkit {statistics.median(res.lrkit_us):.2f} us",
            file=sys.stderr,
        )
        step_rows.append(res)
    vec_rows = bench_vector(vec_n, vec_runs)
    report = render(step_rows, vec_rows, steps, reps, vec_n, vec_runs, timer_ns, command)
    print(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
