"""`compare` and `explain`: train a task under several schedules, optimizers, LRs and seeds.

Every (schedule, optimizer, LR, seed) combination is one `fit` run. The runs go to a pool of
worker processes, one per core, each with ``torch.set_num_threads(1)``: small models train
fastest on one thread each, and many of them train side by side. The result groups the
histories by run (everything but the seed) and summarizes each run over its seeds.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lrkit._procs import worker_setup
from lrkit.tasks import Task, load
from lrkit.tasks import names as task_names
from lrkit.tasks._base import task_epochs
from lrkit.train._history import History
from lrkit.train._runs import CompareResult, Run
from lrkit.train._schedule import KEYWORD_SCHEDULES, ScheduleFitWarning

__all__ = ["KEYWORD_SCHEDULES", "CompareResult", "Run", "compare"]


#: Called after each finished training run with (runs done, runs in all).
Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# jobs run in the worker processes


@dataclass(frozen=True)
class _FitJob:
    task: str | Task
    optimizer: str
    schedule: str
    lr: float | None
    epochs: int
    seed: int


@dataclass(frozen=True)
class _FindJob:
    task: str | Task
    optimizer: str
    target: str
    epochs: int
    seed: int


def _warm_up() -> None:
    """Pay the one-time costs of a process before any run is timed.

    The first optimizer step of a process imports ``torch._dynamo`` (seconds); without this the
    first run of every worker would look several times slower than the others.
    """
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.zeros(1)
    torch.optim.SGD([p], lr=0.1).step()


def _init_worker(parent: int | None = None) -> None:
    """Set up a process that runs jobs: one thread; in a worker process (`parent` given), one that
    stops with its parent (`worker_setup`)."""
    import torch

    if parent is not None:
        worker_setup(parent)

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # runs at a far too large LR would crawl on denormal floats
    _warm_up()


def _run_job(job: _FitJob | _FindJob) -> dict[str, Any]:
    task = load(job.task)
    task.data()  # loaded (and cached) before the run's clock starts
    if isinstance(job, _FindJob):
        return _find(task, job)
    from lrkit.train._fit import fit

    with warnings.catch_warnings():  # `compare` said what it has to say about the schedule
        warnings.simplefilter("ignore", ScheduleFitWarning)
        history = fit(task, job.optimizer, job.schedule, job.epochs, lr=job.lr, seed=job.seed, progress=False)
    return history.to_dict()


def _find(task: Task, job: _FindJob) -> dict[str, Any]:
    from lrkit.train._range import range_test

    result = range_test(task, job.optimizer, job.target, seed=job.seed, epochs=job.epochs)
    return {"suggestion": float(result.suggestion), "status": result.status}


def _execute(
    jobs: Sequence[_FitJob | _FindJob],
    workers: int | None,
    on_done: Progress | None = None,
    start_method: str | None = None,
) -> list[dict[str, Any]]:
    """Run `jobs` (in order of the returned list) on `workers` processes, or here when one suffices."""
    if not jobs:
        return []
    n = _cores() if workers is None else workers
    n = min(n, len(jobs))
    method = start_method or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    if n > 1 and not all(_picklable(j.task, method) for j in jobs):
        n = 1
    out: list[dict[str, Any]] = []
    if n <= 1:
        import torch

        threads = torch.get_num_threads()
        try:
            _init_worker()
            for j in jobs:
                out.append(_run_job(j))
                if on_done is not None:
                    on_done(len(out), len(jobs))
        finally:
            torch.set_num_threads(threads)
            torch.set_flush_denormal(False)  # torch's default
        return out
    if method == "fork":
        _warm_up()  # the workers inherit what this process has imported and loaded
    ctx = multiprocessing.get_context(method)
    # multiprocessing's Pool, whose terminate() is made for stopping workers in the middle of a
    # job: an interrupt, or a job that raised, ends them at once (the other results are not wanted)
    with ctx.Pool(n, initializer=_init_worker, initargs=(os.getpid(),)) as pool:
        for done, result in enumerate(pool.imap(_run_job, jobs, chunksize=1), start=1):
            out.append(result)
            if on_done is not None:
                on_done(done, len(jobs))
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _picklable(task: str | Task, method: str) -> bool:
    """Whether a worker process started with `method` can rebuild `task`."""
    if isinstance(task, str):
        return True
    if method != "fork" and type(task).__module__.startswith("_lrkit_task_"):  # a file `load` ran
        return False
    try:
        pickle.dumps(task)
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------------------------
# validation


def _task_ref(task: str | Task) -> tuple[str | Task, Task]:
    """(what the workers get, the task itself); a registered task travels by its name."""
    if isinstance(task, Task):
        if task.name in task_names() and type(load(task.name)) is type(task):
            return task.name, task
        return task, task
    if not isinstance(task, str):
        raise TypeError(f"`task` must be a task name, a reference or a Task, got {type(task).__name__}")
    return task, load(task)  # TaskError (a ValueError) names the reference


def _check_optimizers(optimizers: Sequence[str]) -> list[str]:
    from lrkit import optim

    if isinstance(optimizers, str) or not optimizers:
        raise ValueError(f"`optimizers` must be a non-empty list of names, got {optimizers!r}")
    valid = optim.names()
    for name in optimizers:
        if name not in valid:
            raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(valid)}")
    return list(dict.fromkeys(optimizers))


def _check_schedules(schedules: Sequence[str]) -> list[str]:
    from lrkit.schedules import parse

    if isinstance(schedules, str) or not schedules:
        raise ValueError(f"`schedules` must be a non-empty list of specs, got {schedules!r}")
    for spec in schedules:
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"a schedule spec must be a non-empty string, got {spec!r}")
        if spec.strip() not in KEYWORD_SCHEDULES:
            parse(spec)  # a SpecError (a ValueError) points at the mistake
    return list(dict.fromkeys(s.strip() for s in schedules))


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {name}={value!r}")
    return value


def _check_lrs(lrs: Any) -> list[float] | str | None:
    if lrs is None:
        return None
    if isinstance(lrs, str) and lrs == "auto":
        return "auto"
    if isinstance(lrs, str) or not isinstance(lrs, Sequence) or not lrs:
        raise ValueError(f"`lrs` must be 'auto', None or a non-empty list of LRs, got lrs={lrs!r}")
    out = []
    for x in lrs:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not (0.0 < x < math.inf):
            raise ValueError(f"every LR in `lrs` must be a finite number > 0, got {x!r}")
        out.append(float(x))
    return list(dict.fromkeys(out))


def _check_start_method(method: Any) -> None:
    valid = multiprocessing.get_all_start_methods()
    if method is not None and method not in valid:
        raise ValueError(f"`start_method` must be None or one of {', '.join(valid)}, got {method!r}")


def _target(spec: str) -> str:
    return "onecycle" if spec.startswith("onecycle") else "constant"


# --------------------------------------------------------------------------------------------
# compare


def compare(
    task: str | Task,
    schedules: Sequence[str],
    optimizers: Sequence[str],
    seeds: int = 1,
    lrs: Literal["auto"] | Sequence[float] | None = None,
    epochs: int | None = None,
    workers: int | None = None,
    *,
    on_run: Progress | None = None,
    start_method: str | None = None,
) -> CompareResult:
    """Train `task` for every (schedule, optimizer, LR, seed) combination and summarize.

    Args:
        task: a task name, a reference (``"path/to/file.py:attr"``, ``"module:attr"``) or a `Task`.
        schedules: schedule specs. ``"constant"`` and ``"onecycle"`` are built by `fit` from the
            run's LR (and length); any other spec (``"cosine(0.01, steps=200)"``) is used as given,
            with one run per optimizer whatever `lrs` says.
        optimizers: names from the `lrkit.optim` registry.
        seeds: seeds ``0 .. seeds - 1`` per combination, >= 1.
        lrs: ``None``: each optimizer's default LR from the registry; ``"auto"``: the LR range
            test's suggestion for each optimizer (`lrkit.finder.find_lr` with the validation
            loader and one training run's worth of verification, target ``"onecycle"`` for specs
            starting with ``"onecycle"``, else ``"constant"``), except for learning-rate-free
            optimizers (``dog``, ``ldog``, ``prodigy``), which keep their default multiplier
            1.0; a list: every LR in it.
        epochs: epochs per run, >= 1 (default: the task's).
        workers: worker processes (default: one per available core); 1 trains in this process.
            Each worker uses one torch thread.
        on_run: called with (runs done, runs in all) as training runs finish.
        start_method: how worker processes start: ``"fork"`` (the default where the platform
            has it: workers inherit the loaded modules and data, and start at once), ``"spawn"``
            or ``"forkserver"`` (fresh interpreters: safer next to threads, seconds slower).

    Returns:
        A `CompareResult`: one `Run` per combination without the seed, with its histories.

    Raises:
        ValueError: unknown task or optimizer, malformed spec, bad `lrs`, `seeds` or `epochs`.
    """
    start = time.perf_counter()
    ref, the_task = _task_ref(task)
    specs = _check_schedules(schedules)
    opts = _check_optimizers(optimizers)
    seeds = _check_positive_int("seeds", seeds)
    n_epochs = _check_positive_int("epochs", task_epochs(the_task) if epochs is None else epochs)
    if workers is not None:
        workers = _check_positive_int("workers", workers)
    lr_choice = _check_lrs(lrs)
    _check_start_method(start_method)
    from lrkit.schedules import parse
    from lrkit.train._schedule import check_fit

    for text in specs:  # once here, rather than once in every run
        if text not in KEYWORD_SCHEDULES:
            check_fit(parse(text), n_epochs * the_task.steps_per_epoch(), where="compare")

    from lrkit import optim

    suggestions: dict[str, float] = {}
    if lr_choice == "auto":
        wanted = list(dict.fromkeys((o, _target(s)) for o in opts for s in specs if s in KEYWORD_SCHEDULES))
        for o, t in wanted:  # a range test does not apply to them: their default multiplier
            spec = optim.get(o)
            if spec.learning_rate_free:
                suggestions[f"{o}/{t}"] = float(spec.default_lr)
        wanted = [(o, t) for o, t in wanted if f"{o}/{t}" not in suggestions]
        found = _execute([_FindJob(ref, o, t, n_epochs, 0) for o, t in wanted], workers, None, start_method)
        for (o, t), f in zip(wanted, found, strict=True):
            value = f["suggestion"]
            if not math.isfinite(value):
                raise ValueError(
                    f"the LR range test gave no suggestion for optimizer {o!r} ({t}, status "
                    f"{f['status']!r}); give the LRs with `lrs`"
                )
            suggestions[f"{o}/{t}"] = value

    def lrs_for(opt: str, spec: str) -> list[float | None]:
        if spec not in KEYWORD_SCHEDULES:
            return [None]
        if lr_choice == "auto":
            return [suggestions[f"{opt}/{_target(spec)}"]]
        if lr_choice is None:
            return [float(optim.get(opt).default_lr)]
        return list(lr_choice)  # type: ignore[arg-type]

    combos = [(s, o, lr) for s in specs for o in opts for lr in lrs_for(o, s)]
    jobs = [_FitJob(ref, o, s, lr, n_epochs, seed) for s, o, lr in combos for seed in range(seeds)]
    done = _execute(jobs, workers, on_run, start_method)
    runs = []
    for i, (s, o, lr) in enumerate(combos):
        hs = [History.from_dict(d) for d in done[i * seeds : (i + 1) * seeds]]
        label = f"{o}, {s}" if lr is None else f"{o}, {s}, lr={lr:.3g}"
        runs.append(Run(label, o, s, lr, hs))
    return CompareResult(
        task=the_task.name or type(the_task).__name__,
        metric=the_task.metric,
        mode=the_task.mode,
        epochs=n_epochs,
        steps_per_epoch=the_task.steps_per_epoch(),
        runs=runs,
        suggestions=suggestions,
        lr_source="range test" if lr_choice == "auto" else "default" if lr_choice is None else "given",
        seconds=time.perf_counter() - start,
    )
