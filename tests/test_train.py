"""`lrkit.train.fit`: resume is bit-exact, plateau follows torch's rule, early stopping restores
the best weights, divergence stops cleanly, checkpoints are atomic and validated."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from lrkit.schedules import parse
from lrkit.tasks import Task, TaskData, TaskError, get
from lrkit.train import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    EarlyStopping,
    History,
    ScheduleFitWarning,
    fit,
    load_checkpoint,
    save_checkpoint,
)


class Noise(Task):
    """Random labels: the validation loss rises from the first epoch on (a plateau at once)."""

    name = "noise"
    metric = "accuracy"
    mode = "max"
    epochs = 6
    batch_size = 16

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)

        def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)

        self._data = TaskData(part(64), part(32), part(32))

    def data(self) -> TaskData:
        return self._data

    def model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def same_run(a: History, b: History) -> None:
    assert a.lrs == b.lrs
    assert a.losses == b.losses
    assert [m for m in a.momenta if m == m] == [m for m in b.momenta if m == m]
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in a.epochs]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"} for e in b.epochs]
    assert (a.status, a.best_epoch, a.restored_epoch) == (b.status, b.best_epoch, b.restored_epoch)
    assert a.final_metric == b.final_metric and a.test_metric == b.test_metric


class Stop(Exception):
    pass


# -- resume ---------------------------------------------------------------------------------------


def test_resume_after_an_interruption_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    task = get("logreg-digits")
    full_model = task.model(0)
    full = fit(task, "adam", "onecycle", 4, lr=0.03, model=full_model)

    def interrupt(h: History) -> None:
        if len(h.epochs) == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(
            task,
            "adam",
            "onecycle",
            4,
            lr=0.03,
            model=task.model(0),
            checkpoint_dir=tmp_path,
            on_epoch=interrupt,
        )
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    seen: list[int] = []
    resumed_model = task.model(0)
    resumed = fit(
        task, "adam", "onecycle", 4, lr=0.03, model=resumed_model, checkpoint_dir=tmp_path, resume=True,
        on_epoch=lambda h: seen.append(len(h.epochs)),
    )  # fmt: skip
    assert seen == [3, 4]  # finished epochs are skipped
    same_run(full, resumed)
    assert not all(m != m for m in resumed.momenta)  # Adam's beta1 follows the one-cycle momentum
    assert_same_weights(weights(full_model), weights(resumed_model))

    # resuming a finished run trains no more and gives the same result
    again = fit(
        task, "adam", "onecycle", 4, lr=0.03, checkpoint_dir=tmp_path, resume=True, on_epoch=seen.append
    )
    assert seen == [3, 4]
    same_run(full, again)


def test_resume_to_more_epochs_with_plateau_and_early_stopping(tmp_path: Path) -> None:
    task = Noise()
    spec = "warmup(6) >> plateau(0.05, factor=0.5, patience=1)"

    seen: list[int] = []

    def run(epochs: int, model: torch.nn.Module, resume: bool, folder: Path | None) -> History:
        seen.clear()
        es = EarlyStopping(patience=4, monitor="val_metric")
        return fit(
            task, "momentum", spec, epochs, model=model, early_stopping=es,
            checkpoint_dir=folder, resume=resume, on_epoch=lambda h: seen.append(len(h.epochs)),
        )  # fmt: skip

    full_model = task.model(0)
    full = run(7, full_model, False, None)
    run(3, task.model(0), False, tmp_path)
    resumed_model = task.model(0)
    resumed = run(7, resumed_model, True, tmp_path)
    assert seen == list(range(4, len(full.epochs) + 1))  # epochs 1-3 are not run again
    same_run(full, resumed)
    assert full.status == "early-stopped" and full.restored_epoch is not None  # stops after the resume
    assert_same_weights(weights(full_model), weights(resumed_model))
    assert min(full.lrs) < 0.05  # the plateau reduced the LR


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path) -> None:
    task = Noise()
    fit(task, "adam", epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"last\.pt.*seed=0, this run has seed=1"):
        fit(task, "adam", epochs=2, seed=1, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="optimizer='adam'"):
        fit(task, "sgd", epochs=2, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(
        CheckpointError, match=r"schedule constant\(0\.001\), this run has the schedule cosine"
    ):
        fit(task, "adam", "cosine(1e-3, steps=8)", epochs=2, checkpoint_dir=tmp_path, resume=True)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"clip_grad_norm=None, this run has clip_grad_norm=1\.0"):
        fit(task, "adam", epochs=2, checkpoint_dir=tmp_path, resume=True, clip_grad_norm=1.0)
    fit(task, "adam", epochs=1, checkpoint_dir=tmp_path / "c", clip_grad_norm=0.5)
    with pytest.raises(CheckpointError, match=r"clip_grad_norm=0\.5, this run has clip_grad_norm=None"):
        fit(task, "adam", epochs=2, checkpoint_dir=tmp_path / "c", resume=True)
    assert fit(task, "adam", epochs=2, checkpoint_dir=tmp_path / "c", resume=True, clip_grad_norm=0.5).epochs
    assert (tmp_path / "last.pt").read_bytes() == before  # the refused resume wrote nothing
    fit(task, "adam", epochs=3, checkpoint_dir=tmp_path / "y")
    with pytest.raises(ValueError, match="has 3 epochs done, more than epochs=2"):
        fit(task, "adam", epochs=2, checkpoint_dir=tmp_path / "y", resume=True)


def test_resume_with_another_schedule_says_what_fit_can_do(tmp_path: Path) -> None:
    """A keyword schedule is built to the run's length: resuming a 2-epoch 'constant' run as a
    4-epoch 'cosine' one is refused in fit's words (not the adapter's schedule='saved' or
    'current', which fit does not have), and the saved spec it suggests does resume."""
    task = get("logreg-digits")  # 34 steps an epoch
    fit(task, "momentum", "constant", epochs=2, lr=0.05, checkpoint_dir=tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CheckpointError) as info:
        fit(task, "momentum", "cosine", epochs=4, lr=0.05, checkpoint_dir=tmp_path, resume=True)
    message = str(info.value)
    assert "the schedule constant(0.05), this run has the schedule cosine(0.05, steps=136)" in message
    assert "schedule='constant(0.05)'" in message and "resume=False" in message
    assert "`checkpoint_dir`" in message
    assert "'saved'" not in message and "'current'" not in message and "ScheduleLR" not in message
    assert (tmp_path / "last.pt").read_bytes() == before  # the refused resume wrote nothing
    resumed = fit(task, "momentum", "constant(0.05)", 4, lr=0.05, checkpoint_dir=tmp_path, resume=True)
    same_run(fit(task, "momentum", "constant", 4, lr=0.05), resumed)


# -- plateau --------------------------------------------------------------------------------------


def test_plateau_follows_torch_reduce_on_plateau() -> None:
    task = Noise()
    h = fit(task, "sgd", "plateau(0.1, factor=0.5, patience=2)", 10)
    per_epoch = len(task.loader())
    # torch's rule, fed the same validation losses
    p = torch.nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, factor=0.5, patience=2)
    for i, e in enumerate(h.epochs):
        expected = ref_opt.param_groups[0]["lr"]
        assert h.lrs[i * per_epoch : (i + 1) * per_epoch] == [expected] * per_epoch, f"epoch {i + 1}"
        assert e["lr"] == expected
        ref.step(e["val_loss"])
    lrs = h.column("lr")
    assert lrs[:4] == [0.1] * 4  # validation loss rises from epoch 1: reduced after 3 bad epochs
    assert lrs[4] == 0.05 and min(lrs) < 0.05


def test_warmup_then_plateau() -> None:
    task = Noise()  # 4 steps per epoch
    h = fit(task, "sgd", "warmup(8) >> plateau(0.1, factor=0.5, patience=1)", 8)
    warm = h.lrs[:8]
    assert all(a < b for a, b in zip(warm, warm[1:], strict=False)) and warm[-1] < 0.1
    assert h.lrs[8] == 0.1
    after = h.lrs[8:]
    assert all(b <= a for a, b in zip(after, after[1:], strict=False))
    assert set(after) <= {0.1 * 0.5**k for k in range(10)}
    assert after[-1] < 0.1


# -- early stopping -------------------------------------------------------------------------------


@pytest.mark.parametrize("monitor", ["val_loss", "val_metric"])
def test_early_stopping_stops_and_restores_the_best_weights(tmp_path: Path, monitor: str) -> None:
    task = Noise()
    model = task.model(0)
    es = EarlyStopping(patience=2, monitor=monitor)  # type: ignore[arg-type]
    h = fit(task, "adam", "constant", 20, lr=0.01, model=model, early_stopping=es, checkpoint_dir=tmp_path)
    assert h.status == "early-stopped"
    assert h.restored_epoch == es.best_epoch is not None
    assert len(h.epochs) == h.restored_epoch + 2
    best = h.epochs[h.restored_epoch - 1]
    assert h.final_metric == best["val_metric"]  # re-scored on the restored weights
    values = h.column(monitor)  # type: ignore[arg-type]
    assert best[monitor] == (min(values) if es.mode == "min" else max(values))
    assert_same_weights(weights(model), load_checkpoint(tmp_path / "best.pt")["model"])
    assert load_checkpoint(tmp_path / "last.pt")["history"]["status"] == "early-stopped"


def test_early_stopping_without_restore_keeps_the_last_weights() -> None:
    task = Noise()
    h = fit(task, "adam", epochs=20, lr=0.01, early_stopping=EarlyStopping(2, restore_best=False))
    assert h.status == "early-stopped" and h.restored_epoch is None
    assert h.final_metric == h.epochs[-1]["val_metric"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patience": 0}, "`patience` must be an int >= 1, got patience=0"),
        ({"patience": 2.5}, "patience=2.5"),
        ({"patience": 2, "min_delta": -1}, "`min_delta` must be a finite number >= 0"),
        ({"patience": 2, "mode": "up"}, "`mode` must be 'min', 'max' or None, got mode='up'"),
        ({"patience": 2, "monitor": "loss"}, "`monitor` must be one of"),
        ({"patience": 2, "restore_best": 1}, "`restore_best` must be True or False"),
    ],
)
def test_early_stopping_validates(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


def test_early_stopping_state_round_trips() -> None:
    es = EarlyStopping(3, min_delta=0.1, monitor="val_metric", mode="max")
    for epoch, v in enumerate([0.5, 0.55, 0.7, 0.6], start=1):
        es.update(epoch, v)
    other = EarlyStopping(3, min_delta=0.1, monitor="val_metric", mode="max")
    other.load_state_dict(json.loads(json.dumps(es.state_dict())))
    assert other.state_dict() == es.state_dict()
    assert (other.best, other.best_epoch, other.bad_epochs) == (0.7, 3, 1)
    with pytest.raises(ValueError, match="monitor='val_metric' but this object has monitor='val_loss'"):
        EarlyStopping(3).load_state_dict(es.state_dict())


# -- divergence -----------------------------------------------------------------------------------


def test_a_divergent_lr_ends_as_diverged_without_crashing(tmp_path: Path) -> None:
    h = fit(get("mlp-diabetes"), "sgd", epochs=3, lr=1e6, checkpoint_dir=tmp_path)
    assert h.status == "diverged"
    assert not math.isfinite(h.losses[-1]) and all(math.isfinite(x) for x in h.losses[:-1])
    assert math.isnan(h.final_metric) and math.isnan(h.test_metric)
    for name in ("last.pt", "best.pt"):
        if (tmp_path / name).exists():
            ck = load_checkpoint(tmp_path / name)
            assert all(torch.isfinite(v).all() for v in ck["model"].values())


@pytest.mark.parametrize(
    ("optimizer", "lr", "schedule"),
    [
        ("adam", 1e39, "constant"),  # beyond float32: torch cannot apply the step at all
        ("adam", 1e38, "constant"),  # within float32, but Adam's first step is 10 * lr
        ("momentum", 1e308, "onecycle"),
        ("sgd", 1e-3, "constant(1e39)"),  # a spec used as it is
    ],
)
def test_an_lr_too_large_for_the_parameters_float_type_ends_as_diverged(
    optimizer: str, lr: float, schedule: str, tmp_path: Path
) -> None:
    task = get("logreg-digits")
    h = fit(task, optimizer, schedule, epochs=2, lr=lr, checkpoint_dir=tmp_path)
    assert h.status == "diverged" and h.steps == 1 and not h.epochs
    assert math.isnan(h.final_metric) and math.isnan(h.test_metric)
    assert not (tmp_path / "last.pt").exists()  # nothing saved from the diverged state


def test_clipped_gradients_keep_a_large_lr_finite_also_under_amp() -> None:
    """On the digits, momentum SGD at LR 1000 diverges; with its gradients clipped to a norm of 1
    it stays finite, with and without AMP (bfloat16 on the CPU: the gradients need no unscaling
    there, the CUDA path unscales before clipping)."""
    task = get("logreg-digits")
    assert fit(task, "momentum", epochs=2, lr=1000.0).status == "diverged"
    for amp in (False, True):
        h = fit(task, "momentum", epochs=2, lr=1000.0, clip_grad_norm=1.0, amp=amp)
        assert h.status == "completed" and all(math.isfinite(x) for x in h.losses), amp


def test_no_checkpoint_from_the_diverged_state(tmp_path: Path) -> None:
    task = get("mlp-diabetes")
    per_epoch = len(task.loader())
    spec = f"constant(0.01, steps={per_epoch}) >> constant(1e6)"  # one good epoch, then blow up
    with pytest.warns(UserWarning, match=r"\[jump\] step \d+: the LR jumps from 0.01 to 1e\+06"):
        h = fit(task, "sgd", spec, 4, checkpoint_dir=tmp_path)
    assert h.status == "diverged" and len(h.epochs) <= 2
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    assert json.dumps(h.to_dict(), allow_nan=False)


def test_a_schedule_given_as_it_is_is_checked_against_the_run_before_it_starts() -> None:
    """Per-step schedules written for another length are the classic mistake: a decay that ends
    early holds its last LR (here 0) for the rest of the run, one that is too long never anneals;
    a schedule that would raise past its horizon is refused before the first step."""
    task = get("logreg-digits")  # 34 steps an epoch: 68 in 2 epochs
    short = r"\[horizon-short\] step 20: .* the last 48 steps hold the LR at 0"
    with pytest.warns(ScheduleFitWarning, match=short):
        fit(task, "momentum", "cosine(0.05, steps=20)", 2)
    with pytest.warns(UserWarning, match=r"\[horizon-long\] the schedule lasts 6800 steps but training runs"):
        fit(task, "momentum", "cosine(0.05, steps=6800)", 2)
    model = task.model(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    refused = r"ends at step 50 with after='error', but the run has 68 steps \(0 to 67\)"
    with pytest.raises(ValueError, match=refused):
        fit(task, "momentum", 'horizon(cosine(0.05, steps=50), steps=50, after="error")', 2, model=model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the keyword schedules are built to fit: nothing to say
        for keyword in ("constant", "step", "cosine", "onecycle"):
            fit(task, "momentum", keyword, 1)


# -- checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_contents_load_with_weights_only(tmp_path: Path) -> None:
    fit(Noise(), "momentum", "onecycle", 2, lr=0.05, checkpoint_dir=tmp_path)
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT
    assert raw["epoch"] == 2 and raw["step"] == 8
    for key in ("model", "optimizer", "scheduler", "history", "early_stopping", "rng"):
        assert key in raw
    assert set(raw["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert History.from_dict(raw["history"]).epochs[-1]["epoch"] == 2
    assert (tmp_path / "best.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temp files


def test_bad_checkpoints_raise_and_leave_the_good_one_alone(tmp_path: Path) -> None:
    task = Noise()
    fit(task, "adam", epochs=2, checkpoint_dir=tmp_path)
    last = tmp_path / "last.pt"
    good = last.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: not a readable torch file"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt: not an lrkit training checkpoint"):
        load_checkpoint(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    assert issubclass(CheckpointError, ValueError)

    # a write that fails half-way leaves the previous file intact, and no temporary file
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_checkpoint(last, {"epoch": 3, "bad": lambda: None})
    assert last.read_bytes() == good
    assert load_checkpoint(last)["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # resuming from a damaged last.pt names it; best.pt stays loadable
    last.write_bytes(good[:100])
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        fit(task, "adam", epochs=3, checkpoint_dir=tmp_path, resume=True)
    assert load_checkpoint(tmp_path / "best.pt")["format"] == CHECKPOINT_FORMAT


# -- history, options, arguments ------------------------------------------------------------------


def test_history_json_round_trip() -> None:
    h = fit(Noise(), "rmsprop", "onecycle", 2, lr=0.01)
    assert len(h.lrs) == len(h.momenta) == len(h.losses) == h.steps == 8
    assert all(math.isnan(m) for m in h.momenta)  # RMSprop without momentum: none to report
    assert h.schedule == str(parse(h.schedule)) and "momentum_range=none" in h.schedule
    h.losses.append(math.inf)  # non-finite values become null
    text = json.dumps(h.to_dict(), allow_nan=False)
    back = History.from_dict(json.loads(text))
    assert back.to_dict() == h.to_dict()
    assert math.isnan(back.losses[-1])
    with pytest.raises(ValueError, match="expected data of format"):
        History.from_dict({"format": "other"})


def test_ready_optimizer_amp_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    task = Noise()
    model = task.model(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    h = fit(task, opt, "onecycle", 2, model=model, amp=True, progress=True)
    assert h.optimizer == "SGD" and h.status == "completed"
    assert 0.04 < max(h.lrs) <= 0.05 and min(h.momenta) < 0.9 < max(h.momenta)
    assert math.isfinite(h.test_metric)
    assert "epoch 2/2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, r"`epochs` must be an int >= 1 .*got epochs=0"),
        ({"lr": -1.0}, ValueError, "`lr` must be a finite number > 0 or None, got lr=-1.0"),
        ({"seed": -1}, ValueError, "seed=-1"),
        ({"optimizer": "adamm"}, ValueError, "unknown optimizer 'adamm'; valid names: sgd"),
        ({"optimizer": torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))])}, ValueError, "pass model="),
        ({"resume": True}, ValueError, "resume=True needs `checkpoint_dir`"),
        ({"device": "nowhere"}, ValueError, "`device` must name a torch device"),
        ({"schedule": "cosin(0.1)"}, ValueError, "unknown schedule 'cosin'"),
        ({"schedule": 3}, TypeError, "`schedule` must be"),
        ({"progress": "yes"}, ValueError, "`progress` must be True, False or None"),
        ({"clip_grad_norm": 0}, ValueError, "`clip_grad_norm` must be a finite number > 0 or None, got clip"),
    ],
)
def test_fit_validates_its_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        fit(Noise(), **{"epochs": 1, **kwargs})


@pytest.mark.parametrize(("attribute", "value"), [("epochs", 0), ("epochs", 2.5), ("batch_size", 0)])
def test_a_task_with_a_bad_epochs_or_batch_size_is_named_not_the_argument(attribute: str, value: Any) -> None:
    task = Noise()
    setattr(task, attribute, value)
    with pytest.raises(TaskError) as info:
        fit(task, "adam")
    message = str(info.value)
    assert f"task 'noise' has {attribute}={value!r}; a task's `{attribute}` must be an int >= 1" in message
    assert ("or pass `epochs`" in message) == (attribute == "epochs")
    if attribute == "epochs":
        assert message.startswith("fit: ")
        assert fit(task, "adam", epochs=1).status == "completed"  # `epochs` given: task.epochs unused


def test_spawned_workers_find_the_modules_beside_a_task_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task loaded from a file whose class lives in a module beside it travels to spawned
    workers pickled; they import that module again, from the folder `load` left on sys.path."""
    from lrkit.tasks import load
    from lrkit.train import compare

    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "lrkit_neighbour_task.py").write_text(
        "from lrkit.tasks import LogregDigits\n\nclass Mine(LogregDigits):\n    name = 'mine'\n"
    )
    (tmp_path / "exp.py").write_text("from lrkit_neighbour_task import Mine\n\ntask = Mine()\n")
    try:
        task = load(f"{tmp_path / 'exp.py'}:task")
        result = compare(
            task, ["constant"], ["adam"], lrs=[1e-2, 1e-3], epochs=1, workers=2, start_method="spawn"
        )
        assert [h.status for h in result.histories()] == ["completed", "completed"]
    finally:
        sys.modules.pop("lrkit_neighbour_task", None)


def test_range_test_on_a_run_shorter_than_the_verification_needs() -> None:
    # 4 steps an epoch: one epoch cannot give five candidates 5 steps each, which find_lr refuses
    # when asked directly; the automatic range test (compare and tune with "auto") trains them 5
    # steps each all the same (its result says so), with no correction for the length
    from lrkit.train import range_test

    r = range_test(Noise(), "adam", epochs=1)
    assert r.verification is not None and r.verification.steps == 5
    assert r.verification.horizon_factor == 1.0
    assert range_test(Noise(), "adam", epochs=10).verification.steps == 40 // 5


def test_a_checkpoint_folder_that_cannot_be_written_is_refused_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    model = get("logreg-digits").model(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for folder in (blocker, blocker / "below"):
        with pytest.raises(ValueError, match=r"fit: `checkpoint_dir` must be a folder lrkit can write to"):
            fit(get("logreg-digits"), "adam", "constant", 1, model=model, checkpoint_dir=folder)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing trained
    made = tmp_path / "new" / "run"  # a folder that does not exist yet is made
    fit(get("logreg-digits"), "adam", "constant", 1, checkpoint_dir=made)
    assert sorted(p.name for p in made.iterdir()) == ["best.pt", "last.pt"]


def test_a_run_stopped_between_its_two_checkpoints_resumes_to_the_right_best_pt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At an epoch that improves, best.pt is written before last.pt: a run stopped after the
    first of the two writes (here: the second fails) resumes from the earlier last.pt, redoes the
    epoch and writes both, so that best.pt is the uninterrupted run's."""
    import lrkit.train._fit as fit_module

    task = get("logreg-digits")
    full = fit(task, "adam", "onecycle", 4, lr=0.03, checkpoint_dir=tmp_path / "full")
    assert full.best_epoch > 1

    written: list[str] = []

    def second_write_fails(path: Path, checkpoint: dict[str, Any], **kwargs: Any) -> Path:
        if checkpoint["epoch"] == full.best_epoch:
            written.append(path.name)
            if len(written) == 2:
                raise OSError(28, "No space left on device")
        return save_checkpoint(path, checkpoint, **kwargs)

    monkeypatch.setattr(fit_module, "save_checkpoint", second_write_fails)
    with pytest.raises(OSError, match="No space left"):
        fit(task, "adam", "onecycle", 4, lr=0.03, checkpoint_dir=tmp_path / "cut")
    monkeypatch.undo()
    fit(task, "adam", "onecycle", 4, lr=0.03, checkpoint_dir=tmp_path / "cut", resume=True)
    full_best, cut_best = (load_checkpoint(tmp_path / d / "best.pt") for d in ("full", "cut"))
    assert cut_best["epoch"] == full_best["epoch"] == full.best_epoch
    assert_same_weights(full_best["model"], cut_best["model"])
    assert written == ["best.pt", "last.pt"]


def test_fit_removes_the_temporary_files_a_killed_run_left(tmp_path: Path) -> None:
    """A run killed in the middle of a checkpoint write leaves ``.last.pt.*.tmp``: never a valid
    file, removed when a run starts in the folder; other files stay."""
    for name in (".last.pt.1a2b3c4d.tmp", ".best.pt.5e6f7a8b.tmp", ".other.pt.1a2b3c4d.tmp", "notes.txt"):
        (tmp_path / name).write_bytes(b"cut sh")
    fit(get("logreg-digits"), "adam", "constant", 1, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.pt.1a2b3c4d.tmp",
        "best.pt",
        "last.pt",
        "notes.txt",
    ]
