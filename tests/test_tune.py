"""lrkit.tune: spaces, folds, lockstep evaluation and pruning on the fold mean, strategies, refit,
storages and their errors, and the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.tasks import get
from lrkit.train import load_checkpoint
from lrkit.tune import (
    Choice,
    Float,
    Int,
    LogFloat,
    SpaceError,
    StorageError,
    folds,
    load_result,
    load_space,
    mask,
    parse_space,
    tune,
)
from lrkit.tune._evaluate import Config, evaluate
from lrkit.tune._lockstep import Stepper
from lrkit.tune._space import grid_points
from lrkit.tune._storage import normalize_url, open_storage

TASK = "logreg-digits"


# ------------------------------------------------------------------------------------------
# spaces


def test_space_yaml_round_trip(tmp_path: Path) -> None:
    text = """
lr: {type: log, low: 1.0e-4, high: 1.0}
momentum: {type: float, low: 0.8, high: 0.99}
batch_size: {type: int, low: 16, high: 128, log: true}
optimizer: [momentum, adam]
schedule: {type: choice, values: [constant, cosine, "warmup(5) >> cosine(0.1, steps=100)"]}
"""
    path = tmp_path / "space.yaml"
    path.write_text(text)
    space = load_space(path)
    assert space == {
        "lr": LogFloat(1e-4, 1.0),
        "momentum": Float(0.8, 0.99),
        "batch_size": Int(16, 128, log=True),
        "optimizer": Choice(("momentum", "adam")),
        "schedule": Choice(("constant", "cosine", "warmup(5) >> cosine(0.1, steps=100)")),
    }
    assert parse_space({k: p.to_config() for k, p in space.items()}) == space
    grid = grid_points(space, 5)
    assert grid["lr"] == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert grid_points(space, 4)["batch_size"] == [16, 32, 64, 128]
    assert grid["optimizer"] == ["momentum", "adam"] and grid["momentum"] == [
        0.8,
        0.8475,
        0.895,
        0.9425,
        0.99,
    ]
    assert all(1e-4 <= v <= 1.0 for v in grid_points({"lr": LogFloat(1.23456789e-4, 0.123456789)}, 7)["lr"])


def test_float_with_log_is_the_log_type() -> None:
    space = parse_space(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
            "momentum": {"type": "float", "low": 0.8, "high": 0.99, "log": False},
        }
    )
    assert space == {"lr": LogFloat(1e-4, 0.1), "momentum": Float(0.8, 0.99)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "the search space is empty"),
        (
            {"lr": {"type": "normal", "low": 1, "high": 2}},
            "unknown type 'normal'; expected one of log, float",
        ),
        ({"lr": {"type": "log", "low": 0.1, "high": 0.1}}, "`low` must be < `high`, got low=0.1, high=0.1"),
        (
            {"lr": {"type": "log", "low": 0.0, "high": 1.0}},
            "a log range must be > 0 at both ends, got low=0.0",
        ),
        ({"lr": {"type": "log", "low": -1e-3, "high": 1.0}}, "a log range must be > 0"),
        ({"x": {"type": "float", "low": 2.0, "high": 1.0}}, "'x' (float): `low` must be < `high`"),
        ({"n": {"type": "int", "low": 1.5, "high": 4}}, "`low` must be an int, got low=1.5"),
        ({"lr": {"type": "log", "low": 1e-3}}, "parameter 'lr' of type 'log' takes low, high, got low"),
        ({"lr": {"type": "log", "low": "a", "high": 1}}, "`low` must be a finite number, got low='a'"),
        ({"o": {"type": "choice", "values": []}}, "`values` must be a non-empty list"),
        ({"o": ["adam", "adam"]}, "`values` has duplicates"),
        ([1, 2], "expected a mapping of parameter names, got list"),
        ({"lr": {"type": "float", "low": 1e-4, "high": 1, "log": "yes"}}, "`log` must be true or false"),
        (
            {"lr": {"type": "float", "low": 1e-4, "high": 1, "log": True, "step": 0.1}},
            "`step` cannot be combined with log: true, got step=0.1",
        ),
        ({"lr": {"type": "float", "low": 0.0, "high": 1, "log": True}}, "a log range must be > 0"),
    ],
)
def test_bad_spaces_name_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(SpaceError) as e:
        parse_space(data)
    assert message in str(e.value)


def test_space_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="cannot read the search space file"):
        load_space(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [unclosed\n")
    with pytest.raises(SpaceError, match="is not valid YAML"):
        load_space(bad)
    code = tmp_path / "code.yaml"
    code.write_text("lr: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SpaceError, match="is not valid YAML"):  # safe_load refuses to build objects
        load_space(code)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"optimizer": Choice(("adam", "lion"))}, "unknown optimizer 'lion'"),
        ({"schedule": Choice(("cosine(0.1, step=3)",))}, "step"),
        ({"optimizer": LogFloat(1e-3, 1.0)}, "'optimizer' must be a choice of optimizer names"),
        (
            {"lr": LogFloat(1e-3, 1.0), "nesterov_typo": Choice((True,))},
            r"rejects the arguments \['nesterov_typo'\]",
        ),
        ({"batch_size": Choice((0, 32))}, "'batch_size' must be ints >= 1"),
        ({"lr": Float(-0.1, 0.1)}, r"'lr' must be finite numbers > 0, got \[-0.1, 0.1\]"),
        ({"lr": Choice(("fast",))}, r"'lr' must be finite numbers > 0, got \['fast'\]"),
        (
            {"lr": LogFloat(1e-3, 1.0), "momentum": Float(0.5, 1.5)},
            r"parameter 'momentum'=1.5 with optimizer 'kfac'",
        ),
    ],
)
def test_spaces_that_would_fail_every_trial_are_refused_before_any_runs(space: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        tune(TASK, space, trials=1, epochs=1, optimizer="kfac")
    assert "Traceback" not in str(e.value)


# ------------------------------------------------------------------------------------------
# folds and lockstep evaluation


def test_folds_are_disjoint_stratified_and_cover_train_plus_val() -> None:
    task = get(TASK)
    data = task.data()
    parts = folds(task, 4, seed=3)
    n = len(data.train[0]) + len(data.val[0])
    seen = torch.cat([p.val[0] for p in parts])
    assert len(seen) == n and len(torch.unique(seen, dim=0)) == len(
        torch.unique(torch.cat([data.train[0], data.val[0]]), dim=0)
    )
    for p in parts:
        assert len(p.train[0]) + len(p.val[0]) == n
        assert torch.equal(p.test[0], data.test[0])  # tuning never trains or validates on test
        share = torch.bincount(p.val[1], minlength=10).float() / len(p.val[1])
        overall = torch.bincount(torch.cat([data.train[1], data.val[1]]), minlength=10).float() / n
        assert float((share - overall).abs().max()) < 0.01  # stratified
    with pytest.raises(ValueError, match="`cv` must be an int >= 2"):
        folds(task, 1)
    with pytest.raises(ValueError, match="smallest class"):
        folds(task, 200)


def test_stepper_runs_in_turn_and_stops_cleanly() -> None:
    order: list[str] = []

    def make(name: str):
        def run(pause):
            for i in range(3):
                order.append(f"{name}{i}")
                pause(i)
            return name

        return run

    a, b = Stepper(make("a")), Stepper(make("b"))
    for _ in range(2):
        a.resume()
        b.resume()
    assert order == ["a0", "b0", "a1", "b1"]
    a.stop()
    b.resume()
    b.resume()
    assert a.done and a.result is None and b.done and b.result == "b"
    assert order == ["a0", "b0", "a1", "b1", "b2"]

    def boom(pause):
        pause(0)
        raise RuntimeError("inside the run")

    c = Stepper(boom)
    c.resume()
    with pytest.raises(RuntimeError, match="inside the run"):
        c.resume()


def test_cv_reports_the_fold_mean_every_epoch_and_pruning_stops_every_fold() -> None:
    task = get(TASK)
    reported: list[tuple[int, float]] = []
    out = evaluate(
        task,
        Config("adam", 1e-2, "constant"),
        epochs=3,
        cv=3,
        report=lambda e, v: reported.append((e, v)) or False,
    )
    assert [e for e, _ in reported] == [1, 2, 3]
    hs = out.histories
    assert len(hs) == 3 and all(h is not None and len(h.epochs) == 3 for h in hs)
    for e, v in reported:
        fold_mean = sum(h.epochs[e - 1]["val_metric"] for h in hs if h is not None) / 3
        assert v == pytest.approx(fold_mean, abs=1e-12)
    assert out.value == pytest.approx(sum(out.fold_values) / 3) and out.epochs == 9
    assert out.value == pytest.approx(reported[-1][1])

    pruned = evaluate(task, Config("adam", 1e-2, "constant"), epochs=5, cv=3, report=lambda e, v: e == 2)
    assert pruned.pruned_at == 2 and pruned.epochs == 6 and math.isnan(pruned.value)
    assert all(h is None for h in pruned.histories)


def test_a_diverged_fold_scores_as_its_untrained_model() -> None:
    task = get("mlp-diabetes")
    out = evaluate(task, Config("sgd", 1e6, "constant"), epochs=2, cv=2)
    assert out.diverged == 2
    assert all(math.isfinite(v) for v in out.fold_values)


# ------------------------------------------------------------------------------------------
# tune


def test_grid_visits_every_point_once_and_refit_scores_the_saved_model(tmp_path: Path) -> None:
    space = {"lr": LogFloat(1e-3, 1.0)}
    result = tune(TASK, space, strategy="grid", grid=4, epochs=2, out=tmp_path)
    lrs = sorted(t.params["lr"] for t in result.trials)
    assert lrs == [1e-3, 1e-2, 0.1, 1.0]
    assert result.count("COMPLETE") == 4 and result.epochs_spent == 8
    assert repr(result) == f"TuneResult({result.summary()})"
    assert "4 trials, 0 pruned, 8 epochs" in repr(result)
    best = max(result.trials, key=lambda t: t.value or -1)
    assert result.best is not None and result.best.number == best.number
    # the refit model on disk is the one scored on the test split
    ck = torch.load(tmp_path / "final.pt", weights_only=True)
    assert ck["params"] == result.best_params
    assert ck["format"] == "lrkit.tuned-model/1"  # a model file, not a training checkpoint to resume
    with pytest.raises(ValueError, match=r"not an lrkit training checkpoint .* got 'lrkit.tuned-model/1'"):
        load_checkpoint(tmp_path / "final.pt")
    task = get(TASK)
    model = task.model(0)
    model.load_state_dict(ck["model"])
    model.eval()
    x, y = task.data().test
    with torch.no_grad():
        assert task.score(model(x), y) == pytest.approx(result.test_metric, abs=1e-9)
    assert ck["history"]["epochs"][-1]["epoch"] == 2


@pytest.mark.parametrize("strategy", ["random", "tpe", "gp"])
def test_strategies_are_reproducible_for_a_seed(strategy: str) -> None:
    space = {"lr": LogFloat(1e-3, 1.0), "optimizer": Choice(("momentum", "adam"))}
    runs = [tune(TASK, space, strategy=strategy, trials=6, epochs=1, seed=7, refit=False) for _ in range(2)]
    a, b = ([(t.params, t.value) for t in r.trials] for r in runs)
    assert a == b and len(a) == 6
    assert {t.params["optimizer"] for t in runs[0].trials} <= {"momentum", "adam"}
    assert all(1e-3 <= t.params["lr"] <= 1.0 for t in runs[0].trials)


@pytest.mark.parametrize("pruner", ["median", "asha", "hyperband"])
def test_pruners_stop_trials_early_and_count_their_epochs(pruner: str) -> None:
    space = {"lr": LogFloat(1e-5, 3.0)}
    result = tune(TASK, space, strategy="random", trials=12, epochs=9, pruner=pruner, seed=1, refit=False)
    pruned = [t for t in result.trials if t.state == "PRUNED"]
    assert pruned, "a wide LR range on 12 trials gives the pruner something to stop"
    assert all(0 < t.epochs < 9 for t in pruned)
    assert all(t.epochs == 9 for t in result.trials if t.state == "COMPLETE")
    assert result.epochs_spent < 12 * 9


def test_optimizer_options_and_schedules_reach_the_trial() -> None:
    space = {
        "lr": Choice((0.05,)),
        "weight_decay": LogFloat(1e-5, 1e-2),
        "schedule": Choice(("constant", "onecycle", "cosine(0.05, steps=68)")),
    }
    result = tune(TASK, space, strategy="grid", grid=2, epochs=2, optimizer="momentum", refit=False)
    assert result.count("COMPLETE") == 6
    assert {t.params["schedule"] for t in result.trials} == {"constant", "onecycle", "cosine(0.05, steps=68)"}


def test_auto_space_brackets_the_range_test_suggestion() -> None:
    result = tune(TASK, "auto", strategy="random", trials=2, epochs=2, refit=False)
    lr = result.space["lr"]
    assert lr["type"] == "log" and lr["high"] / lr["low"] == pytest.approx(10, rel=1e-3)
    assert all(lr["low"] <= t.params["lr"] <= lr["high"] for t in result.trials)
    # the first trial is the range test's suggestion, the centre of the space
    assert result.trials[0].params["lr"] == pytest.approx(math.sqrt(lr["low"] * lr["high"]), rel=1e-3)


def test_auto_space_of_a_learning_rate_free_optimizer_is_around_its_multiplier() -> None:
    result = tune(TASK, "auto", optimizer="prodigy", strategy="random", trials=2, epochs=1, refit=False)
    lr = result.space["lr"]
    assert lr["type"] == "log" and lr["low"] == pytest.approx(10**-0.5, rel=1e-3)
    assert lr["high"] == pytest.approx(10**0.5, rel=1e-3)
    assert result.trials[0].params["lr"] == 1.0


def test_first_trial_is_the_given_guess_and_is_checked() -> None:
    space = {"lr": LogFloat(1e-3, 1.0), "optimizer": Choice(("momentum", "adam"))}
    result = tune(TASK, space, strategy="tpe", trials=2, epochs=1, first={"lr": 0.02}, refit=False)
    assert result.trials[0].params["lr"] == 0.02 and result.trials[0].params["optimizer"] in (
        "momentum",
        "adam",
    )
    with pytest.raises(ValueError, match=r"`first` gives lr=5.0, outside its search space"):
        tune(TASK, space, trials=1, epochs=1, first={"lr": 5.0})
    with pytest.raises(ValueError, match=r"`first` names 'momentum', which is not in the search space"):
        tune(TASK, space, trials=1, epochs=1, first={"momentum": 0.9})


def test_a_named_study_is_kept_in_sqlite_joined_and_guarded(tmp_path: Path) -> None:
    space = {"lr": LogFloat(1e-3, 1.0)}
    first = tune(TASK, space, strategy="random", trials=2, epochs=1, study="s", out=tmp_path, refit=False)
    assert (tmp_path / "lrkit-studies.db").exists() and first.storage is not None
    second = tune(TASK, space, strategy="random", trials=2, epochs=1, study="s", out=tmp_path, refit=False)
    assert [t.number for t in second.trials] == [0, 1, 2, 3]
    # the joining command draws its own trials, not the study's first ones again
    assert len({t.params["lr"] for t in second.trials}) == 4
    with pytest.raises(ValueError, match=r"study 's' was started with other settings \(epochs: study has 1"):
        tune(TASK, space, strategy="random", trials=1, epochs=2, study="s", out=tmp_path)
    stored = load_result(f"sqlite:///{tmp_path / 'lrkit-studies.db'}", "s")
    assert len(stored.trials) == 4
    with pytest.raises(ValueError, match=r"no study 'nope'.*studies there: s"):
        load_result(f"sqlite:///{tmp_path / 'lrkit-studies.db'}", "nope")
    with pytest.raises(StorageError, match=r"there is no SQLite file '.*typo/studies.db'"):
        load_result(f"sqlite:///{tmp_path / 'typo' / 'studies.db'}", "s")
    assert not (tmp_path / "typo").exists()  # reading a study creates nothing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trials": 0}, "`trials` must be an int >= 1 or None, got trials=0"),
        ({"trials": -3}, "got trials=-3"),
        ({"strategy": "cmaes"}, "`strategy` must be one of grid, random, tpe, gp, got strategy='cmaes'"),
        ({"pruner": "patient"}, "`pruner` must be one of none, median, asha, hyperband"),
        ({"cv": 1}, "`cv` must be None (hold-out) or an int >= 2"),
        ({"workers": 2}, "workers=2 need a shared storage"),
        ({"timeout": 0}, "`timeout` must be a number of seconds > 0"),
        ({"storage": "not a url"}, "`storage` must be a database URL"),
        ({"storage": "redis://localhost:6379"}, "must be a sqlite:// or postgresql:// URL"),
        ({"out": "/dev/null/below"}, "`out` must be a folder lrkit can write to, got out='/dev/null/below'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as e:
        tune(TASK, {"lr": LogFloat(1e-3, 1.0)}, **{"trials": 1, "epochs": 1, **kwargs})
    assert message in str(e.value)


def test_storage_urls_never_show_the_password() -> None:
    assert mask("postgresql://ann:hunter2@db:5432/x") == "postgresql://ann:***@db:5432/x"
    assert "hunter2" not in mask("postgresql://ann:hunter2@db:5432/x?sslmode=require")
    assert normalize_url("postgresql://ann@h:1/d") == "postgresql+psycopg://ann@h:1/d"
    with pytest.raises(StorageError) as e:
        open_storage("postgresql://ann:hunter2@127.0.0.1:1/nodb")  # nothing listens on port 1
    assert "cannot connect" in str(e.value) and "hunter2" not in str(e.value) and "ann:***@" in str(e.value)
    with pytest.raises(StorageError) as e:
        open_storage("postgresql://ann:hunter2@@bad host/db")
    assert "hunter2" not in str(e.value)
    with pytest.raises(ValueError, match="`grace_period` must be longer than `heartbeat_interval`"):
        open_storage("sqlite:///x.db", heartbeat_interval=5, grace_period=5)
    # a raw "@" in the password, and libpq's password parameter in the query
    for url in (
        "postgresql://ann:Hunt@er2Secret@127.0.0.1:1/db",
        "postgresql://ann@127.0.0.1:1/db?password=er2Secret",
    ):
        assert "er2Secret" not in mask(url)
        with pytest.raises(StorageError) as e:
            open_storage(url)
        assert "er2Secret" not in str(e.value)


def test_postgres_url_parameters_in_the_query_are_used(postgres_url: str) -> None:
    """libpq's parameters in the query (sslmode, a password, a Unix socket's host) reach the
    connection check, as they reach the study's own connections."""
    load = f"{postgres_url}?sslmode=disable&application_name=lrkit-test"
    assert open_storage(load) is not None
    with pytest.raises(StorageError, match="cannot connect"):
        open_storage(f"{postgres_url}?sslmode=require")  # the throwaway server has no TLS


def test_postgres_url_without_driver_works(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://")
    space = {"lr": LogFloat(1e-2, 1.0)}
    result = tune(
        TASK,
        space,
        strategy="random",
        trials=2,
        epochs=1,
        storage=postgres_url,
        study="plain-url",
        refit=False,
    )
    assert result.count("COMPLETE") == 2 and result.storage == postgres_url
    assert len(load_result(postgres_url, "plain-url").trials) == 2


# ------------------------------------------------------------------------------------------
# command line


def test_cli_tune_writes_report_json_figures_and_model(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: log, low: 1.0e-3, high: 1.0}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        ["tune", "--task", TASK, "--strategy", "tpe", "--trials", "5", "--epochs", "2", "--cv", "2",
         "--pruner", "median", "--space", str(space), "--study", "cli", "-o", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "refit test accuracy" in " ".join(res.output.split())
    for name in ("tuning.html", "tuning.json", "tuning-history.png", "tuning-lr.png", "final.pt"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "tuning.json").read_text())
    assert data["cv"] == 2 and len(data["trials"]) == 5 and data["test_metric"] > 0.8
    page = (out / "tuning.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "2-fold cross-validation" in page
    shown = CliRunner().invoke(
        app, ["study", "show", "--storage", f"sqlite:///{out / 'lrkit-studies.db'}", "--study", "cli"]
    )
    assert shown.exit_code == 0 and "5 trials" in " ".join(shown.output.split())
    plotted = CliRunner().invoke(
        app,
        [
            "study",
            "plot",
            "--storage",
            f"sqlite:///{out / 'lrkit-studies.db'}",
            "--study",
            "cli",
            "-o",
            str(tmp_path / "p"),
        ],
    )
    assert plotted.exit_code == 0 and (tmp_path / "p" / "tuning.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "`trials` must be an int >= 1"),
        (["--strategy", "anneal"], "`strategy` must be one of"),
        (["--storage", "postgresql://u:pw123@127.0.0.1:1/db"], "cannot connect"),
        (["--space", "missing.yaml"], "cannot read the search space file"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["tune", "--task", TASK, "--epochs", "1", *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output
    assert "pw123" not in res.output


def test_cli_study_commands_refuse_a_missing_file_and_a_bad_top(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo' / 'studies.db'}"
    res = CliRunner().invoke(app, ["study", "show", "--storage", url, "--study", "s"])
    assert res.exit_code == 2 and "there is no SQLite file" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "typo").exists()
    res = CliRunner().invoke(app, ["study", "show", "--storage", url, "--study", "s", "--top", "0"])
    assert res.exit_code == 2 and "--top" in res.output


def test_python_m_lrkit_cli_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lrkit.cli", "tune", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--strategy" in out.stdout


def test_a_single_grid_point_runs_all_its_epochs() -> None:
    result = tune(TASK, {"lr": Choice((0.1,))}, strategy="grid", epochs=3, refit=False)
    assert result.trials[0].epochs == 3


def test_timeout_stops_starting_trials() -> None:
    result = tune(
        TASK, {"lr": LogFloat(1e-3, 1.0)}, strategy="random", trials=500, epochs=1, timeout=1.0, refit=False
    )
    assert 1 <= len(result.trials) < 500
    assert all(t.state == "COMPLETE" for t in result.trials)


def test_kfac_and_learning_rate_free_optimizers_are_searchable() -> None:
    # without `lr` in the space each optimizer runs at its registry default (1.0: a multiplier for DoG
    # and Prodigy); K-FAC needs the model, which the trial passes to the registry
    space = {"optimizer": Choice(("kfac", "dog", "prodigy"))}
    result = tune("mlp-digits", space, strategy="grid", epochs=6, refit=False)  # DoG starts slowly
    assert sorted(t.params["optimizer"] for t in result.trials) == ["dog", "kfac", "prodigy"]
    assert all(t.state == "COMPLETE" and t.value is not None and t.value > 0.5 for t in result.trials)


class _BrokenTask(type(get(TASK))):  # type: ignore[misc]
    """logreg-digits whose model cannot be built: every trial raises."""

    def model(self, seed: int) -> torch.nn.Module:
        raise RuntimeError("this model cannot be built")


def test_workers_that_raise_are_reported_not_hidden(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"worker \d stopped with exit status 1.*study 'broken'"):
        tune(
            _BrokenTask(),
            {"lr": LogFloat(1e-3, 1.0)},
            trials=4,
            epochs=1,
            workers=2,
            study="broken",
            out=tmp_path,
        )
    stored = load_result(f"sqlite:///{tmp_path / 'lrkit-studies.db'}", "broken")
    assert stored.trials and all(t.state == "FAIL" for t in stored.trials)


def test_a_schedule_that_does_not_fit_the_trials_is_said_once() -> None:
    with pytest.warns(UserWarning) as caught:
        tune(TASK, {"lr": LogFloat(1e-3, 1.0)}, strategy="random", trials=3, epochs=1, refit=False,
             schedule="cosine(0.01, steps=5)")  # fmt: skip
    said = [str(w.message) for w in caught if "schedule cosine(0.01, steps=5)" in str(w.message)]
    assert len(said) == 1 and "[horizon-short] step 5" in said[0], said


def test_a_refit_that_diverges_saves_no_model_and_the_result_still_writes(tmp_path: Path) -> None:
    """Every trial diverges and scores as its untrained model; the best of them diverges again
    when refit: no final model, a warning, and JSON with null for the test metric."""
    space = {"lr": LogFloat(1e3, 1e5)}
    with pytest.warns(RuntimeWarning, match=r"the refit of the best configuration \(lr=.*\) diverged"):
        result = tune("mlp-digits", space, optimizer="sgd", strategy="random", trials=2, epochs=1,
                      out=tmp_path)  # fmt: skip
    assert all(t.diverged for t in result.trials)
    assert math.isnan(result.test_metric) and result.checkpoint is None
    assert not (tmp_path / "final.pt").exists()
    assert json.loads(result.to_json())["test_metric"] is None
    assert "refit test diverged" in result.summary()
    from lrkit.report import write_tuning_report

    page = write_tuning_report(result, tmp_path / "report")
    assert "the training diverged, and no final model was saved" in Path(page).read_text()


def test_a_grid_search_covers_its_grid_around_a_first_trial() -> None:
    """A queued first trial is not a grid point: it comes on top of the grid, which is covered."""
    space = {"lr": LogFloat(1e-3, 1.0)}
    result = tune(TASK, space, strategy="grid", grid=4, epochs=1, first={"lr": 0.05}, refit=False)
    assert result.trials[0].params["lr"] == 0.05
    assert sorted(t.params["lr"] for t in result.trials[1:]) == [1e-3, 1e-2, 0.1, 1.0]
    auto = tune(TASK, "auto", strategy="grid", grid=3, epochs=1, refit=False)
    assert sorted(t.params["lr"] for t in auto.trials) == grid_points(parse_space(auto.space), 3)["lr"]


def test_a_trial_left_running_before_it_started_is_failed_by_the_next_command(tmp_path: Path) -> None:
    """A worker killed after Optuna made its trial RUNNING but before the trial's first heartbeat
    leaves a trial that never goes stale; the next command to join the study fails it."""
    import time
    import warnings

    import optuna

    space = {"lr": LogFloat(1e-3, 1.0)}
    kw = dict(strategy="random", trials=1, epochs=1, study="o", out=tmp_path, refit=False, heartbeat=(1, 2))
    tune(TASK, space, **kw)  # type: ignore[arg-type]
    url = f"sqlite:///{tmp_path / 'lrkit-studies.db'}"
    study = optuna.load_study(study_name="o", storage=open_storage(url))
    with warnings.catch_warnings():  # Optuna says heartbeats are meant for Study.optimize: as here
        warnings.simplefilter("ignore", UserWarning)
        orphan = study.ask()  # RUNNING, no heartbeat, never started by lrkit's objective
    time.sleep(2.2)  # older than the grace period
    result = tune(TASK, space, **kw)  # type: ignore[arg-type]
    states = {t.number: t.state for t in result.trials}
    assert states[orphan.number] == "FAIL" and list(states.values()).count("COMPLETE") == 2


def test_a_study_without_lrkit_settings_is_not_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    import lrkit.tune._api as api

    monkeypatch.setattr(api, "SETTINGS_WAIT", 0.2)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="plain", storage=open_storage(url))
    with pytest.raises(ValueError, match=r"study 'plain' in .* has no lrkit settings.*another `study` name"):
        tune(TASK, {"lr": LogFloat(1e-3, 1.0)}, trials=1, epochs=1, study="plain", storage=url, refit=False)


def test_cli_tune_on_a_full_disk_says_so_in_one_line(tmp_path: Path) -> None:
    """The refit's model cannot be written (files cannot grow past 4 kB, as on a full disk): one
    line, exit status 1, and no file, not even a temporary one, in the output folder."""
    import resource

    out = tmp_path / "out"
    args = ["tune", "--task", TASK, "--strategy", "random", "--trials", "2", "--epochs", "1", "-o", str(out)]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # Python ignores SIGXFSZ: EFBIG instead
    try:
        res = CliRunner().invoke(app, args)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert f"error: cannot write to {out}: [Errno 27] File too large" in res.output
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("study", [None, "s"])
def test_cli_tune_interrupted_says_what_it_kept(
    study: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C: exit status 130 and one line; with a stored study, that its finished trials are kept."""
    import lrkit.tune

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lrkit.tune, "tune", interrupted)
    named = [] if study is None else ["--study", study]
    res = CliRunner().invoke(app, ["tune", "--task", TASK, "--epochs", "1", *named, "-o", str(tmp_path)])
    assert res.exit_code == 130
    kept = f"; the finished trials are kept in study 's' in {tmp_path / 'lrkit-studies.db'}; the same "
    kept += "command joins it"
    assert res.output == "interrupted" + ("" if study is None else kept) + "\n"


def test_a_grid_search_on_two_workers_runs_every_point_once(tmp_path: Path) -> None:
    """Optuna's grid sampler tells the points done by their index in its shuffled grid: every
    process must shuffle it alike, or the workers repeat some points and skip others."""
    space = {"lr": Choice((0.001, 0.01, 0.03, 0.1, 0.3))}
    result = tune(TASK, space, strategy="grid", epochs=1, workers=2, study="g", out=tmp_path, refit=False)
    assert sorted(t.params["lr"] for t in result.trials) == [0.001, 0.01, 0.03, 0.1, 0.3]
    again = tune(TASK, space, strategy="grid", epochs=1, study="g", out=tmp_path, refit=False)
    assert len(again.trials) == 5  # a finished grid: a joining command adds nothing


def test_a_database_failure_under_a_study_is_said_in_one_line_without_the_password() -> None:
    import optuna
    import sqlalchemy.exc

    from lrkit.tune._storage import database_failure

    url = "postgresql://ann:pw123@127.0.0.1:5/db"
    try:
        try:
            raise sqlalchemy.exc.OperationalError(
                "commit", {}, Exception("server closed the connection pw123")
            )
        except sqlalchemy.exc.OperationalError as inner:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit."
            ) from inner
    except optuna.exceptions.StorageInternalError as e:
        said = database_failure(e, url)
    assert said is not None and "\n" not in said and "pw123" not in said
    assert said.startswith("the study's database failed (postgresql://ann:***@127.0.0.1:5/db): ")
    assert "server closed the connection ***" in said
    assert database_failure(ValueError("not the database"), url) is None
