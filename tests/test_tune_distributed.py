"""Many workers on one study, on a real PostgreSQL server and on a SQLite file: one worker is
killed with SIGKILL in the middle of a trial, and the study must come out whole.

The PostgreSQL server is a throwaway cluster started by ``scripts/with-postgres`` on a loopback port.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from lrkit.tasks import load
from lrkit.tune import load_result
from lrkit.tune._storage import open_storage
from lrkit.tune._tune import Objective, Plan

DATA = Path(__file__).parent / "data"
TASK = f"{DATA / 'sleepy_task.py'}:task"
LRKIT = [sys.executable, "-m", "lrkit.cli"]


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: log, low: 1.0e-3, high: 0.3}\n")
    return path


def _kill_a_worker_mid_trial(url: str, study: str, proc: subprocess.Popen[str]) -> tuple[int, int]:
    """SIGKILL the worker of a running trial that has drawn its parameters; (trial number, pid)."""
    storage = open_storage(url)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            )
        except KeyError:  # the study is not created yet
            trials = []
        for t in trials:
            worker = t.user_attrs.get("worker")
            started = t.datetime_start
            if worker and started is not None and t.params and t.number >= 2:  # training, not starting
                pid = int(worker.rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                return t.number, pid
        time.sleep(0.01)
    _, err = proc.communicate(timeout=10)
    pytest.fail(f"no running trial to kill; the command ended with {proc.returncode}: {err[-2000:]}")


def _run_and_kill(url: str, tmp_path: Path, workers: int, trials: int) -> None:
    study = f"killed-{workers}"
    cmd = [
        *LRKIT, "tune", TASK, "--strategy", "random", "--trials", str(trials), "--workers", str(workers),
        "--storage", url, "--study", study, "--space", str(_space(tmp_path)), "--heartbeat", "1",
        "--no-refit", "-o", str(tmp_path / "out"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    victim, pid = _kill_a_worker_mid_trial(url, study, proc)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]

    all_trials = optuna.load_study(study_name=study, storage=open_storage(url)).get_trials(deepcopy=False)
    numbers = [t.number for t in all_trials]
    assert numbers == list(range(len(numbers))), "every trial number appears once"
    states = [t.state.name for t in all_trials]
    assert "RUNNING" not in states and "WAITING" not in states
    failed = [t for t in all_trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [victim], "only the killed trial failed"
    assert failed[0].user_attrs["worker"].endswith(f":{pid}")
    reruns = [t for t in all_trials if t.system_attrs.get("failed_trial") == victim]
    assert len(reruns) == 1, "the killed trial is run again once"
    assert failed[0].params, "the trial was killed while training"
    assert reruns[0].state.name == "COMPLETE" and reruns[0].params == failed[0].params
    assert not reruns[0].user_attrs["worker"].endswith(f":{pid}")
    complete = [t for t in all_trials if t.state.name == "COMPLETE"]
    # the copy got its ticket back: the command ran its trials, and the copy besides
    assert len(complete) == len(all_trials) - 1 == trials, "no completed trial is lost"
    assert all(t.value is not None and t.user_attrs["epochs"] == 3 for t in complete)
    pids = {t.user_attrs["worker"] for t in all_trials}
    assert len(pids) >= workers, "every worker process ran trials"

    result = load_result(url, study)
    assert result.count("COMPLETE") == len(complete) and result.best is not None
    shown = subprocess.run(
        [*LRKIT, "study", "show", "--storage", url, "--study", study], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert f"{len(all_trials)} trials" in " ".join(shown.stdout.split())


def test_four_workers_on_postgres_survive_a_killed_worker(postgres_url: str, tmp_path: Path) -> None:
    _run_and_kill(postgres_url, tmp_path, workers=4, trials=40)


def test_two_workers_on_sqlite_survive_a_killed_worker(tmp_path: Path) -> None:
    _run_and_kill(f"sqlite:///{tmp_path / 'study.db'}", tmp_path, workers=2, trials=24)


def test_a_trial_has_a_heartbeat_before_it_trains(tmp_path: Path) -> None:
    """Optuna's heartbeat thread writes a trial's first heartbeat asynchronously, and a trial
    without any heartbeat is never found stale: a worker killed before that write (seen on SQLite:
    the trial had its parameters) left the trial RUNNING for ever. lrkit's objective writes the
    first heartbeat itself, before it draws the parameters."""
    db = tmp_path / "study.db"
    storage = open_storage(f"sqlite:///{db}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="beat", storage=storage, direction="minimize")
    task = load(TASK)
    build = task.model
    beats_when_training: list[int] = []

    def model(seed: int) -> torch.nn.Module:
        with sqlite3.connect(db) as con:
            beats_when_training.append(con.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0])
        return build(seed)

    task.model = model  # type: ignore[method-assign]  # the real task, watched as it starts training
    plan = Plan(
        task=TASK, metric="rel_mse", mode="min", space={"lr": {"type": "log", "low": 1e-3, "high": 0.3}},
        strategy="random", pruner="none", epochs=1, cv=None, seed=0, optimizer="adam", schedule="constant",
    )  # fmt: skip
    with pytest.warns(UserWarning, match="supposed to be used with Study.optimize"):
        trial = study.ask()  # no heartbeat thread: only what the objective writes
    study.tell(trial, Objective(plan, task)(trial))
    assert beats_when_training and all(n == 1 for n in beats_when_training)
