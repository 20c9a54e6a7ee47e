"""`tune` and `load_result`: the library calls behind ``lrkit tune`` and ``lrkit study show``."""

from __future__ import annotations

import datetime
import math
import os
import secrets
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lrkit._checks import writable_folder
from lrkit.tasks import Task, TaskData, load
from lrkit.tasks._base import task_epochs
from lrkit.train._compare import _warm_up
from lrkit.tune._folds import SplitTask, pooled
from lrkit.tune._result import TuneResult, from_study
from lrkit.tune._space import (
    DEFAULT_GRID_POINTS,
    Param,
    SpaceError,
    load_space,
    parse_space,
    validate_space,
)
from lrkit.tune._storage import GRACE_PERIOD, HEARTBEAT_INTERVAL, default_storage, mask, open_storage
from lrkit.tune._tune import (
    PRUNERS,
    STRATEGIES,
    OnTrial,
    Plan,
    _worker_main,
    auto_space,
    check_plan,
    check_space,
    describe,
    make_pruner,
    make_sampler,
    spawn_context,
    work,
)

__all__ = ["load_result", "tune"]


def _positive_int(name: str, value: Any, *, none: bool = False) -> None:
    if none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1{' or None' if none else ''}, got {name}={value!r}")


def _space(
    space: Any, task: Task, optimizer: str, schedule: str, seed: int, epochs: int
) -> tuple[dict[str, Param], dict[str, Any] | None]:
    """The space, and for ``"auto"`` the range test's suggestion as a first trial."""
    if space is None:
        raise SpaceError("`space` is required: a mapping of parameters, a YAML file, or 'auto'")
    if isinstance(space, str) and space == "auto":
        params, first, _ = auto_space(task, optimizer, schedule, seed=seed, epochs=epochs)
        return params, first
    if isinstance(space, str | Path):
        return load_space(space), None
    if isinstance(space, Mapping) and all(isinstance(v, Param) for v in space.values()):
        return validate_space(space), None
    return parse_space(space), None


def _check_first(first: Mapping[str, Any], space: Mapping[str, Param]) -> None:
    for name, value in first.items():
        if name not in space:
            raise ValueError(f"`first` names {name!r}, which is not in the search space ({', '.join(space)})")
        param = space[name]
        if not param.contains(value):
            raise ValueError(f"`first` gives {name}={value!r}, outside its search space {param.to_config()}")


#: Identifies the refit model file (``final.pt``): a dict of the model's state dict (``model``),
#: the parameters (``params``), the study's settings (``plan``) and the refit's history
#: (``history``), read with ``torch.load(path, weights_only=True)``. It is not a training
#: checkpoint to resume from.
MODEL_FORMAT = "lrkit.tuned-model/1"


def _refit(
    task: Task, plan: Plan, params: Mapping[str, Any], directory: Path | None
) -> tuple[float, float, str | None]:
    """Train the best configuration on train+val and score the test split once.

    The refit's per-epoch "validation" is the training pool itself, so nothing is read from the
    test split before the final score. Returns (test metric, seconds, checkpoint path).
    """
    import torch

    from lrkit import optim
    from lrkit.train import fit
    from lrkit.train._checkpoint import save_checkpoint
    from lrkit.tune._evaluate import resolve

    start = time.perf_counter()
    config = resolve(params, optimizer=plan.optimizer, schedule=plan.schedule)
    x, y = pooled(task)
    data = TaskData(train=(x, y), val=(x, y), test=task.data().test)
    full = SplitTask(task, data, batch_size=config.batch_size, tag="refit on train+val")
    torch.manual_seed(plan.seed)
    model = full.model(plan.seed)
    opt = optim.make(config.optimizer, model, config.lr, **config.options)
    history = fit(
        full, opt, config.schedule, plan.epochs, lr=config.lr, seed=plan.seed, model=model, progress=False
    )
    path = None
    if history.status == "diverged":
        warnings.warn(
            f"the refit of the best configuration ({', '.join(f'{k}={v!r}' for k, v in params.items())}) "
            "diverged on train+val: there is no final model to save",
            RuntimeWarning,
            stacklevel=3,
        )
        return math.nan, time.perf_counter() - start, None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "final.pt"
        save_checkpoint(
            path,
            {
                "model": model.state_dict(),
                "params": dict(params),
                "plan": describe(plan),
                "history": history.to_dict(),
            },
            tag=MODEL_FORMAT,
        )
    return history.test_metric, time.perf_counter() - start, None if path is None else str(path)


def tune(
    task: str | Task,
    space: Any = "auto",
    *,
    strategy: str = "tpe",
    trials: int | None = None,
    cv: int | None = None,
    pruner: str = "none",
    epochs: int | None = None,
    optimizer: str = "adam",
    schedule: str = "constant",
    storage: str | None = None,
    study: str | None = None,
    workers: int = 1,
    timeout: float | None = None,
    seed: int = 0,
    refit: bool = True,
    out: str | Path | None = None,
    grid: int = DEFAULT_GRID_POINTS,
    heartbeat: tuple[int, int] = (HEARTBEAT_INTERVAL, GRACE_PERIOD),
    first: Mapping[str, Any] | None = None,
    on_trial: OnTrial | None = None,
) -> TuneResult:
    """Search `space` for the configuration with the best validation metric, then refit it.

    Args:
        task: a `Task`, a built-in name or a ``file.py:attr`` / ``module:attr`` reference.
        space: ``{name: LogFloat | Float | Int | Choice}``, its mapping form, a YAML file, or
            ``"auto"``: ``lr`` over half a decade either side of the LR range test's suggestion,
            which is the first trial (the centre of the grid, for ``"grid"``).
            ``lr``, ``optimizer``, ``schedule`` and ``batch_size`` mean what they say; any other
            name is an option of the optimizer (``weight_decay``, ``momentum``...).
        strategy: ``"grid"``, ``"random"``, ``"tpe"`` or ``"gp"`` (Gaussian-process Bayesian search).
        trials: trials this call runs, split across its workers (default: the grid's size for
            ``"grid"``, plus one for a `first` trial, else 20). Other commands joining the same
            study add their own.
        cv: None for the task's hold-out validation split, or k >= 2 folds of train+val pooled
            (stratified for classification); trials are scored and pruned on the fold mean.
        pruner: ``"none"``, ``"median"``, ``"asha"`` (successive halving) or ``"hyperband"``.
        epochs: epochs of every trial and of the refit (default: ``task.epochs``).
        optimizer, schedule: used when the space does not search them; `schedule` is a keyword
            (constant, step, cosine, onecycle: shaped by the trial's LR) or any spec.
        storage: a database URL (``sqlite:///file.db``, ``postgresql://user@host:port/db``); None:
            in memory, or the SQLite file ``<out or .>/lrkit-studies.db`` when `study` is given.
        study: the study's name; a study that exists is joined (with the same settings only).
        workers: local worker processes, each with one thread.
        timeout: seconds after which no new trial starts.
        seed: seeds the samplers (worker i uses seed + 1000 i), folds, models and batch order. A
            command that joins an existing study seeds its samplers afresh instead, so that it does
            not draw again the trials the study already has (a grid search keeps `seed`: its
            processes share the grid's points out by their place in the seed's shuffled order).
        refit: retrain the best configuration on train+val and score the test split once.
        out: a folder for the refit checkpoint (``final.pt``) and, with `study`, the default SQLite file.
        grid: points per continuous parameter for ``"grid"``.
        heartbeat: (interval, grace period) in seconds: a trial whose worker stopped writing
            heartbeats for the grace period is failed and queued again (at most 3 times).
        first: the parameters of the first trial (a known good guess), for a new study; the
            parameters it leaves out are drawn as usual.
        on_trial: called with (trial number, state, value) after each finished trial.

    Raises:
        ValueError: a bad argument, named in the message; `SpaceError` for a bad space and
            `StorageError` for a malformed or unreachable storage (its password never shown).
    """
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # lrkit reports trials itself
    try:
        return _tune(
            task, space, strategy=strategy, trials=trials, cv=cv, pruner=pruner, epochs=epochs,
            optimizer=optimizer, schedule=schedule, storage=storage, study=study, workers=workers,
            timeout=timeout, seed=seed, refit=refit, out=out, grid=grid, heartbeat=heartbeat, first=first,
            on_trial=on_trial,
        )  # fmt: skip
    finally:
        optuna.logging.set_verbosity(verbosity)


def _tune(
    task: str | Task,
    space: Any,
    *,
    strategy: str,
    trials: int | None,
    cv: int | None,
    pruner: str,
    epochs: int | None,
    optimizer: str,
    schedule: str,
    storage: str | None,
    study: str | None,
    workers: int,
    timeout: float | None,
    seed: int,
    refit: bool,
    out: str | Path | None,
    grid: int,
    heartbeat: tuple[int, int],
    first: Mapping[str, Any] | None,
    on_trial: OnTrial | None,
) -> TuneResult:
    import optuna

    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {', '.join(STRATEGIES)}, got strategy={strategy!r}")
    if pruner not in PRUNERS:
        raise ValueError(f"`pruner` must be one of {', '.join(PRUNERS)}, got pruner={pruner!r}")
    _positive_int("trials", trials, none=True)
    _positive_int("workers", workers)
    _positive_int("epochs", epochs, none=True)
    _positive_int("grid", grid)
    if cv is not None and (isinstance(cv, bool) or not isinstance(cv, int) or cv < 2):
        raise ValueError(f"`cv` must be None (hold-out) or an int >= 2 (folds), got cv={cv!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise ValueError(f"`timeout` must be a number of seconds > 0 or None, got timeout={timeout!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, got seed={seed!r}")
    if study is not None and (not isinstance(study, str) or not study.strip()):
        raise ValueError(f"`study` must be a non-empty name or None, got study={study!r}")
    the_task = load(task)
    n_epochs = task_epochs(the_task) if epochs is None else epochs
    directory = None if out is None else writable_folder(out, "out", make=False)
    url = storage
    if url is None and study is not None:
        url = default_storage(directory or Path("."))
    if workers > 1 and url is None:
        raise ValueError(
            f"workers={workers} need a shared storage: give `study` (a SQLite file) or `storage` "
            "(a database URL)"
        )
    store = open_storage(
        url, heartbeat_interval=heartbeat[0], grace_period=heartbeat[1]
    )  # fails fast on a bad URL
    study_name = study or f"lrkit-{the_task.name or 'task'}"

    existing = None
    if url is not None:
        try:
            existing = optuna.load_study(study_name=study_name, storage=store).user_attrs.get("lrkit")
        except KeyError:
            existing = None
    if existing is not None and space == "auto":  # joining: the study's own space, no new range test
        params, auto_first = parse_space(existing["space"]), None
    else:
        params, auto_first = _space(space, the_task, optimizer, schedule, seed, n_epochs)
    check_space(params, optimizer, schedule)
    # a grid search over the auto space has the range test's suggestion as its centre already
    start = dict(first) if first is not None else (None if strategy == "grid" else auto_first)
    if start is not None:
        _check_first(start, params)
    plan = Plan(
        task=the_task.name if isinstance(task, Task) else str(task),
        metric=the_task.metric,
        mode=the_task.mode,
        space={k: p.to_config() for k, p in params.items()},
        strategy=strategy,
        pruner=pruner,
        epochs=n_epochs,
        cv=cv,
        seed=seed,
        optimizer=optimizer,
        schedule=schedule,
        grid_points=grid,
    )
    check_plan(existing, plan, study_name)
    try:
        the_study = optuna.create_study(
            study_name=study_name, storage=store, direction=plan.direction(), pruner=make_pruner(plan)
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:  # joining (another command may have just made it)
        the_study = optuna.load_study(study_name=study_name, storage=store, pruner=make_pruner(plan))
        created = False
        if existing is None:
            existing = _settings_of(the_study, study_name, url)
            check_plan(existing, plan, study_name)
        _fail_unstarted(the_study, older_than=heartbeat[1])  # left by a command killed earlier
    if created:
        the_study.set_user_attr("lrkit", describe(plan))
        if start is not None:
            the_study.enqueue_trial(start)
    # The command that makes the study draws from `seed`, so that a run is reproducible; one
    # that joins it (another machine, or more trials for a finished study) draws afresh, or its
    # samplers would propose the very trials the study already has.
    sampler_seed = seed if created else secrets.randbelow(2**31 - 1000 * workers)
    the_study.sampler = make_sampler(plan, seed=sampler_seed)
    if trials is None:  # a grid: every point, and the first trial (off the grid) on top
        grid_size = math.prod(len(p.grid(grid)) for p in params.values())
        trials = grid_size + (start is not None and created) if strategy == "grid" else 20
    deadline = None if timeout is None else time.time() + float(timeout)
    _warm_up()  # once here, not once per trial thread or forked worker
    ctx = spawn_context()
    tickets = ctx.Value("i", trials)
    if workers == 1:
        work(plan, the_task, url, study_name, tickets, deadline=deadline, heartbeat=heartbeat,
             study=the_study, on_trial=on_trial, sampler_seed=sampler_seed)  # fmt: skip
    else:
        # forked workers inherit the task; spawned ones load it again from its name (or unpickle it)
        shipped = task if isinstance(task, str) and ctx.get_start_method() != "fork" else the_task
        _supervise(
            plan, shipped, url, study_name, tickets, workers, deadline, heartbeat, the_study, ctx, on_trial,
            sampler_seed,
        )  # fmt: skip

    result = from_study(the_study, None if url is None else mask(url))
    result.task = plan.task
    if refit and result.best is not None:
        result.test_metric, result.refit_seconds, result.checkpoint = _refit(
            the_task, plan, result.best.params, directory
        )
    return result


def _supervise(
    plan: Plan,
    task: Task | str,
    url: str | None,
    study_name: str,
    tickets: Any,
    workers: int,
    deadline: float | None,
    heartbeat: tuple[int, int],
    study: Any,
    ctx: Any,
    on_trial: OnTrial | None,
    sampler_seed: int,
) -> None:
    """Run `workers` processes; when one is killed, fail its trial once it is stale and run it again.

    A worker that raised (a bug, or a task that cannot train) is not replaced: once the others
    are done, `RuntimeError` says which ones stopped.

    A killed worker's trial keeps the state RUNNING. Once its heartbeat is older than the grace
    period, `fail_stale_trials` marks it failed and queues a copy with the same parameters; which
    process does it first (this one, or a worker as it starts its next trial) is a matter of
    timing. Every copy gets a ticket back, so that the command still runs its `trials` trials and
    the copy besides, on a new worker if every other one has finished.
    """
    import optuna

    assert url is not None  # checked by tune

    def start(i: int) -> Any:
        p = ctx.Process(
            target=_worker_main,
            args=(plan, task, url, study_name, tickets, i, deadline, heartbeat, sampler_seed, os.getpid()),
            daemon=False,
        )
        p.start()
        return p

    def copies() -> set[int]:  # trials queued again after their worker died
        return {t.number for t in study.get_trials(deepcopy=False) if "failed_trial" in t.system_attrs}

    credited = copies()  # a joined study's copies from before this command
    procs = {i: start(i) for i in range(workers)}
    next_index = workers
    pending_deaths: list[float] = []
    errors: list[str] = []
    seen: set[int] = set()
    try:
        while procs or pending_deaths:
            time.sleep(0.2)
            for i, p in list(procs.items()):
                if p.exitcode is None:
                    continue
                del procs[i]
                if p.exitcode < 0:  # killed by a signal: its trial goes stale and is run again
                    pending_deaths.append(time.time())
                elif p.exitcode > 0:  # raised: Optuna has marked its trial failed
                    errors.append(f"worker {i} stopped with exit status {p.exitcode}")
            dying = bool(pending_deaths)  # until every dead worker's trial has been queued again
            if pending_deaths and time.time() - pending_deaths[0] > heartbeat[1] + heartbeat[0]:
                pending_deaths.pop(0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
                # a trial the worker took and died with before starting it has no heartbeat to go
                # stale: it is failed here, and its ticket given back for a fresh trial
                unstarted = _fail_unstarted(study, older_than=heartbeat[1] + heartbeat[0])
                with tickets.get_lock():
                    tickets.value += unstarted
                if unstarted and not procs:
                    procs[next_index] = start(next_index)
                    next_index += 1
            if dying:
                requeued = copies() - credited
                credited |= requeued
                with tickets.get_lock():
                    tickets.value += len(requeued)
                if requeued and not procs:
                    procs[next_index] = start(next_index)
                    next_index += 1
            if on_trial is not None:
                for t in study.get_trials(deepcopy=False):
                    if t.state.is_finished() and t.number not in seen:
                        seen.add(t.number)
                        on_trial(t.number, t.state.value, math.nan if t.value is None else float(t.value))
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
            p.join()
    if errors:
        raise RuntimeError(
            f"{'; '.join(errors)} (its error is printed above); the trials that finished are kept "
            f"in study {study_name!r}"
        )


#: Seconds a joining command waits for the settings of a study another command has just made.
SETTINGS_WAIT = 5.0


def _settings_of(study: Any, name: str, url: str | None) -> dict[str, Any]:
    """The lrkit settings of a study another command made; it writes them just after making the
    study, so they are waited for a moment. A study without them was not made by lrkit (or the
    command that made it stopped at once): joining it would mix experiments, so it is refused."""
    deadline = time.monotonic() + SETTINGS_WAIT
    while True:
        settings = study.user_attrs.get("lrkit")
        if settings is not None:
            return dict(settings)
        if time.monotonic() >= deadline:
            raise ValueError(
                f"study {name!r} in {mask(url or '')} has no lrkit settings: it was not made by lrkit "
                "tune, or the command that made it stopped before writing them; give another `study` name"
            )
        time.sleep(0.2)


def _fail_unstarted(study: Any, older_than: float) -> int:
    """Fail the trials taken by a worker that died before it started them; returns how many.

    Optuna makes a trial RUNNING as it draws the trial's parameters, before the trial's first
    heartbeat, and a trial without a heartbeat is never found stale: one whose worker was killed
    in between would stay RUNNING for ever. lrkit's objective marks every trial it starts (the
    ``worker`` attribute, right after the first heartbeat); a RUNNING trial without the mark,
    older than `older_than` seconds, was left that way.
    """
    import optuna

    now = datetime.datetime.now()  # Optuna keeps naive local times
    failed = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "worker" in t.user_attrs or t.datetime_start is None:
            continue
        if (now - t.datetime_start).total_seconds() > older_than:
            try:
                study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            except (ValueError, RuntimeError):  # finished meanwhile after all
                continue
            failed += 1
    return failed


def load_result(storage: str, study: str) -> TuneResult:
    """The trials and best configuration of a stored study (``lrkit study show``)."""
    import optuna

    store = open_storage(storage, create=False)
    try:
        the_study = optuna.load_study(study_name=study, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store)]
        raise ValueError(
            f"no study {study!r} in {mask(storage)}; studies there: {', '.join(names) or 'none'}"
        ) from None
    result = from_study(the_study, mask(storage))
    return result
