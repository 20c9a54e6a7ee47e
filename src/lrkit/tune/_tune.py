"""`tune`: search a task's learning rate (and friends) with Optuna, on one or many processes.

A study's settings (task, space, strategy, pruner, folds, epochs) are stored in the study itself,
so a command on another machine that joins it with the same ``storage`` and ``study`` runs the
same search, and one with different settings is refused instead of mixing two experiments.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from lrkit._procs import worker_setup
from lrkit.tasks import Task, load
from lrkit.train._schedule import schedule_warnings_once
from lrkit.tune._evaluate import RESERVED, evaluate, resolve
from lrkit.tune._space import (
    DEFAULT_GRID_POINTS,
    Choice,
    LogFloat,
    Param,
    SpaceError,
    grid_points,
    parse_space,
)
from lrkit.tune._storage import GRACE_PERIOD, HEARTBEAT_INTERVAL, database_failure, open_storage

__all__ = ["PRUNERS", "STRATEGIES", "Plan", "make_pruner", "make_sampler"]

#: Search strategies: Optuna's grid, random, TPE and Gaussian-process samplers.
STRATEGIES = ("grid", "random", "tpe", "gp")
#: Pruners: none, median stopping, asynchronous successive halving, Hyperband.
PRUNERS = ("none", "median", "asha", "hyperband")
#: Decades either side of the range test's suggestion that ``space="auto"`` searches.
AUTO_SPAN = 0.5

OnTrial = Callable[[int, int, float], None]


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to run trials of a study; kept in the study's user attributes."""

    task: str
    metric: str
    mode: str
    space: dict[str, Any]
    strategy: str
    pruner: str
    epochs: int
    cv: int | None
    seed: int
    optimizer: str
    schedule: str
    grid_points: int = DEFAULT_GRID_POINTS

    def params(self) -> dict[str, Param]:
        return parse_space(self.space)

    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self.mode == "max" else "minimize"


def _startup(plan: Plan) -> int:
    """Random trials before a model-based sampler starts: 2 per parameter, at least 4."""
    return max(4, 2 * len(plan.space))


def make_sampler(plan: Plan, worker: int = 0, *, seed: int | None = None) -> Any:
    """The Optuna sampler of `plan.strategy`, seeded with ``seed + 1000 * worker`` (`seed`:
    ``plan.seed`` by default), so that each worker of a command draws its own trials; a grid
    search, with ``plan.seed`` in every process (see below)."""
    import optuna

    if plan.strategy == "grid":
        # Every process of a study draws the same shuffled grid: Optuna's grid sampler knows the
        # points done by their index in it, and another order would repeat some and skip others.
        return optuna.samplers.GridSampler(grid_points(plan.params(), plan.grid_points), seed=plan.seed)
    seed = (plan.seed if seed is None else seed) + 1000 * worker
    if plan.strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if plan.strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=_startup(plan), constant_liar=True)
    return optuna.samplers.GPSampler(
        seed=seed, n_startup_trials=_startup(plan), deterministic_objective=False
    )


def make_pruner(plan: Plan) -> Any:
    """The Optuna pruner of `plan.pruner`, with rungs in epochs.

    The median pruner waits for a quarter of the epochs and five finished trials; successive
    halving and Hyperband start at a ninth of the epochs with a reduction factor of 3, so a
    trial that survives two rungs trains to the end. Waiting longer protects slow learning
    rates that win late, which aggressive pruning is known to kill.
    """
    import optuna

    first = max(1, plan.epochs // 9)
    if plan.pruner == "none":
        return optuna.pruners.NopPruner()
    if plan.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, plan.epochs // 4))
    if plan.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)
    return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=plan.epochs, reduction_factor=3)


class Objective:
    """Optuna's objective for a plan: draw the parameters, train, report each epoch, prune."""

    def __init__(self, plan: Plan, task: Task) -> None:
        self.plan = plan
        self.task = task
        self.space = plan.params()

    def __call__(self, trial: Any) -> float:
        import optuna

        _first_heartbeat(trial)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = {name: p.suggest(trial, name) for name, p in self.space.items()}
        config = resolve(params, optimizer=self.plan.optimizer, schedule=self.plan.schedule)

        def report(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            return epoch < self.plan.epochs and bool(trial.should_prune())  # a finished run completes

        out = evaluate(
            self.task, config, epochs=self.plan.epochs, cv=self.plan.cv, seed=self.plan.seed, report=report
        )
        trial.set_user_attr("epochs", out.epochs)
        trial.set_user_attr("diverged", out.diverged)
        if out.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned after epoch {out.pruned_at}")
        trial.set_user_attr("fold_values", out.fold_values)
        return out.value


def _first_heartbeat(trial: Any) -> None:
    """Write the trial's first heartbeat now, before anything else of it is stored.

    Optuna's heartbeat thread writes it asynchronously (on a busy SQLite file, possibly after the
    trial has drawn its parameters), and a trial without any heartbeat is never found stale: a
    worker killed before that first write would leave its trial RUNNING for ever.
    """
    storage: Any = getattr(trial, "storage", None)  # none on a FixedTrial
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if interval is not None:
        storage.record_heartbeat(trial._trial_id)  # Optuna's trials expose no public id for this


def _claim(tickets: Any) -> bool:
    """Take one trial from the command's budget (a shared counter), False when none is left."""
    with tickets.get_lock():
        if tickets.value <= 0:
            return False
        tickets.value -= 1
        return True


def _grid_done(study: Any, size: int) -> bool:
    """Every point of the grid is done or running (a queued trial, such as the first one, is not
    a grid point: Optuna's grid sampler gives it no ``grid_id``)."""
    points = {
        t.system_attrs["grid_id"]
        for t in study.get_trials(deepcopy=False)
        if "grid_id" in t.system_attrs and (t.state.is_finished() or t.state.name == "RUNNING")
    }
    return len(points) >= size


def work(
    plan: Plan,
    task: Task | str,
    storage: str | None,
    study_name: str,
    tickets: Any,
    *,
    worker: int = 0,
    deadline: float | None = None,
    heartbeat: tuple[int, int] = (HEARTBEAT_INTERVAL, GRACE_PERIOD),
    study: Any = None,
    on_trial: OnTrial | None = None,
    sampler_seed: int | None = None,
) -> None:
    """Run trials of `study_name` until `tickets` (a shared counter) or the deadline runs out.

    `study` is the Optuna study to use in this process (an in-memory one); otherwise the study is
    loaded from `storage`, with a sampler seeded from `sampler_seed` (see `make_sampler`).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread per trial, parallel over worker processes
    try:
        _trials(plan, task, storage, study_name, tickets, worker, deadline, heartbeat, study, on_trial,
                sampler_seed)  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _trials(
    plan: Plan,
    task: Task | str,
    storage: str | None,
    study_name: str,
    tickets: Any,
    worker: int,
    deadline: float | None,
    heartbeat: tuple[int, int],
    study: Any,
    on_trial: OnTrial | None,
    sampler_seed: int | None,
) -> None:
    import optuna

    the_task = load(task) if isinstance(task, str) else task
    if study is None:
        store = open_storage(storage, heartbeat_interval=heartbeat[0], grace_period=heartbeat[1])
        study = optuna.load_study(
            study_name=study_name,
            storage=store,
            sampler=make_sampler(plan, worker, seed=sampler_seed),
            pruner=make_pruner(plan),
        )
    objective = Objective(plan, the_task)
    callbacks = []
    if on_trial is not None:

        def report(_: Any, t: Any) -> None:
            on_trial(t.number, t.state.value, math.nan if t.value is None else float(t.value))

        callbacks.append(report)
    grid_size = math.prod(len(v) for v in grid_points(plan.params(), plan.grid_points).values())
    with schedule_warnings_once():  # a schedule that does not fit the runs: said once, not per trial
        while (deadline is None or time.time() < deadline) and _claim(tickets):
            if plan.strategy == "grid" and _grid_done(study, grid_size):
                break
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=False, callbacks=callbacks)


def _worker_main(plan: Plan, task: Task | str, storage: str, study_name: str, tickets: Any, worker: int,
                 deadline: float | None, heartbeat: tuple[int, int], sampler_seed: int,
                 parent: int) -> None:  # fmt: skip
    import optuna

    worker_setup(parent)  # stops with the command; its trial, left RUNNING, goes stale and runs again

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a worker process: lrkit reports trials
    try:
        work(plan, task, storage, study_name, tickets, worker=worker, deadline=deadline,
             heartbeat=heartbeat, sampler_seed=sampler_seed)  # fmt: skip
    except Exception as e:  # the database failed: one line, not a traceback of the driver's
        said = database_failure(e, storage)
        if said is None:
            raise
        print(f"error: worker {worker}: {said}", file=sys.stderr, flush=True)
        sys.exit(1)


def check_space(space: Mapping[str, Param], optimizer: str, schedule: str) -> None:
    """Refuse, before any trial runs, values that would fail every trial that draws them."""
    import torch

    from lrkit import optim
    from lrkit.schedules import parse
    from lrkit.train import KEYWORD_SCHEDULES

    names = optim.names()
    for key, what in (("optimizer", "optimizer names"), ("schedule", "schedule specs")):
        if key in space and not isinstance(space[key], Choice):
            raise SpaceError(f"search space parameter {key!r} must be a choice of {what}")
    opt_param, sched_param = space.get("optimizer"), space.get("schedule")
    opts = list(opt_param.values) if isinstance(opt_param, Choice) else [optimizer]
    for o in opts:
        if o not in names:
            raise SpaceError(
                f"search space parameter 'optimizer': unknown optimizer {o!r}; valid: {', '.join(names)}"
            )
    schedules = list(sched_param.values) if isinstance(sched_param, Choice) else [schedule]
    for s in schedules:
        if not isinstance(s, str) or not s.strip():
            raise SpaceError(f"search space parameter 'schedule': expected a schedule spec, got {s!r}")
        if s not in KEYWORD_SCHEDULES:
            parse(s)
    lr = space.get("lr")
    if lr is not None:
        values = lr.grid(2)  # the two ends of a range, or every choice
        if any(isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf for v in values):
            raise SpaceError(f"search space parameter 'lr' must be finite numbers > 0, got {values!r}")
    bs = space.get("batch_size")
    if bs is not None:
        values = bs.grid(4)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise SpaceError(f"search space parameter 'batch_size' must be ints >= 1, got {values!r}")
    extra = {k: p for k, p in space.items() if k not in RESERVED}
    for o in opts:
        for name, p in extra.items():
            for value in p.grid(2):  # the two ends of a range, or every choice
                try:
                    optim.make(o, torch.nn.Linear(1, 1), **{name: value})
                except (TypeError, ValueError) as e:
                    raise SpaceError(
                        f"search space parameter {name!r}={value!r} with optimizer {o!r}: {e} (any "
                        f"parameter but {', '.join(RESERVED)} is an option of the optimizer)"
                    ) from None


def auto_space(
    task: Task, optimizer: str, schedule: str, *, seed: int = 0, epochs: int | None = None
) -> tuple[dict[str, Param], dict[str, Any], Any]:
    """``lr`` log-uniform over half a decade either side of the LR range test's suggestion.

    The range test (with its verification on the validation split) is run for `optimizer` and
    the target of `schedule` (the peak of one-cycle, else a constant LR). Its verification has
    already trained candidates half a decade apart and kept the best, so the space spans the
    bracket between that winner's two neighbours, moved with the suggestion's correction for the
    full training length. Returns the space, the first trial (the suggestion, inside the space
    once rounded) and the `FinderResult` (its steps and seconds are what the space cost).

    A learning-rate-free `optimizer` (``dog``, ``ldog``, ``prodigy``) takes ``lr`` as a multiplier
    of the step it sets itself, which a range test cannot read: its space spans half a decade
    either side of its default multiplier (1.0), which is the first trial, and no range test is
    run (the `FinderResult` is None).
    """
    from lrkit import optim
    from lrkit.train import range_test

    spec = optim.get(optimizer)
    result = None
    if spec.learning_rate_free:
        s = float(spec.default_lr)
    else:
        target = "onecycle" if schedule == "onecycle" else "constant"
        result = range_test(task, optimizer, target, seed=seed, epochs=epochs)
        s = float(result.suggestion)
        if not math.isfinite(s) or s <= 0:
            raise ValueError(
                f"space='auto': the LR range test gave no suggestion for {task.name or 'the task'} "
                f"(status {result.status!r}); give the search space explicitly"
            )
    span = 10.0**AUTO_SPAN
    lr = LogFloat(float(f"{s / span:.4g}"), float(f"{s * span:.4g}"))
    return {"lr": lr}, {"lr": min(max(s, lr.low), lr.high)}, result


def describe(plan: Plan) -> dict[str, Any]:
    """The plan as the study's ``lrkit`` user attribute."""
    return asdict(plan)


def check_plan(existing: Mapping[str, Any] | None, plan: Plan, study: str) -> None:
    """Refuse to join a study that was started with other settings."""
    if not existing:
        return
    mine = describe(plan)
    differ = [k for k in mine if k != "seed" and existing.get(k) != mine[k]]
    if differ:
        parts = "; ".join(f"{k}: study has {existing.get(k)!r}, this command {mine[k]!r}" for k in differ)
        raise ValueError(f"study {study!r} was started with other settings ({parts}); use another study name")


def spawn_context() -> Any:
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)
