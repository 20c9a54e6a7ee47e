"""The built-in tasks: data splits, models, LR sensitivity, the loader, `load`, and `train`."""

from __future__ import annotations

import functools
import math
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lrkit.tasks._builtin as builtin
from lrkit.schedules import onecycle
from lrkit.tasks import (
    OPTIMIZERS,
    BatchLoader,
    RunResult,
    Task,
    TaskData,
    TaskError,
    get,
    load,
    make_optimizer,
    names,
    train,
)

OPTIMIZERS_ORIGINAL = dict(OPTIMIZERS)

NAMES = ["cnn-digits", "logreg-digits", "lstm-sequence", "mlp-diabetes", "mlp-digits", "mlp-spirals"]

# task -> (optimizer, lr, a metric it must beat at its default epochs, the baseline it beats)
GOOD = {
    "logreg-digits": ("adam", 1e-2, 0.90, 0.1),
    "mlp-digits": ("adam", 1e-3, 0.90, 0.1),
    "cnn-digits": ("adam", 1e-2, 0.90, 0.1),
    "mlp-diabetes": ("adam", 3e-4, 0.75, 1.0),
    "lstm-sequence": ("adam", 1e-2, 0.70, 0.1),
    "mlp-spirals": ("adam", 1e-2, 0.90, 1 / 3),
}


def _better(task: Task, a: float, b: float) -> bool:
    return a > b if task.mode == "max" else a < b


def _rebuild(task: Task) -> TaskData:
    """The task's data built again from scratch, bypassing the caches."""
    for value in vars(builtin).values():
        if isinstance(value, functools._lru_cache_wrapper):
            value.cache_clear()
    return task.data()


# -- registry -----------------------------------------------------------------------------------


def test_names_and_get() -> None:
    assert names() == NAMES
    for name in NAMES:
        task = get(name)
        assert isinstance(task, Task)
        assert task.name == name
        assert (task.metric, task.mode) in {("accuracy", "max"), ("rel_mse", "min")}
        assert task.epochs >= 1 and task.batch_size >= 1 and task.description


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown task 'mlp-digit'") as info:
        get("mlp-digit")
    for name in NAMES:
        assert name in str(info.value)
    with pytest.raises(TaskError, match="valid names: cnn-digits"):
        load("nope")


# -- data and models ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_data_splits_are_deterministic_and_well_formed(name: str) -> None:
    task = get(name)
    data = task.data()
    assert task.data() is data  # cached
    sizes = [len(data.split(s)[0]) for s in ("train", "val", "test")]
    total = sum(sizes)
    assert sizes[0] == pytest.approx(0.6 * total, abs=2)
    assert sizes[1] == pytest.approx(0.2 * total, abs=2)
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        assert len(x) == len(y)
        assert x.dtype in (torch.float32, torch.int64)
        assert not x.requires_grad
        if task.metric == "accuracy":
            assert y.dtype == torch.int64
        else:
            assert y.dtype == torch.float32
    if task.metric == "accuracy":  # stratified: every class in every split, in proportion
        classes = torch.unique(data.train[1])
        for split in ("val", "test"):
            assert torch.equal(torch.unique(data.split(split)[1]), classes)
        share_train = torch.bincount(data.train[1]) / sizes[0]
        share_val = torch.bincount(data.val[1]) / sizes[1]
        assert torch.allclose(share_train, share_val, atol=0.02)
    again = _rebuild(task)
    assert again is not data
    for split in ("train", "val", "test"):
        for a, b in zip(data.split(split), again.split(split), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="must be one of train, val, test"):
        data.split("validation")


def test_standardized_inputs_and_targets() -> None:
    x, _ = get("mlp-digits").data().train
    assert x.mean().abs() < 1e-3
    x, y = get("mlp-diabetes").data().train
    assert torch.allclose(x.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(10), atol=1e-4)
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std(unbiased=False)) - 1) < 1e-4
    x, _ = get("cnn-digits").data().train
    assert x.shape[1:] == (1, 8, 8)


def test_generated_sequences_have_a_unique_most_frequent_symbol() -> None:
    x, y = builtin.majority_sequences(500, length=20, symbols=10, seed=3)
    assert x.shape == (500, 20) and x.min() >= 0 and x.max() < 10
    counts = np.stack([(x == k).sum(axis=1) for k in range(10)], axis=1)
    top = np.sort(counts, axis=1)
    assert (top[:, -1] > top[:, -2]).all()
    assert (counts[np.arange(500), y] == top[:, -1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_model_weights_come_from_the_seed(name: str) -> None:
    task = get(name)
    state = torch.random.get_rng_state()
    a, b, a2 = task.model(0), task.model(1), task.model(0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    pa, pb, pa2 = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (a, b, a2))
    assert torch.equal(pa, pa2)
    assert not torch.equal(pa, pb)
    x, y = task.data().val
    with torch.no_grad():
        out = a.eval()(x[:7])
    assert len(out) == 7
    loss = task.loss(out, y[:7])
    assert loss.ndim == 0 and math.isfinite(float(loss))
    with pytest.raises(ValueError, match="seed"):
        task.model(-1)


def test_rel_mse_of_the_mean_is_one() -> None:
    task = get("mlp-diabetes")
    _, y = task.data().val
    assert task.score(torch.full_like(y, float(y.mean())), y) == pytest.approx(1.0)
    assert task.score(y.clone(), y) == 0.0


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run on one CPU thread, as the benchmarks do, and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# -- LR sensitivity -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_good_lr_trains_and_a_huge_one_fails(name: str, one_thread: None) -> None:
    task = get(name)
    optimizer, lr, target, baseline = GOOD[name]
    good = train(task, optimizer=optimizer, lr=lr)
    assert not good.diverged
    assert _better(task, good.val_metric, target), good
    assert _better(task, good.test_metric, baseline)
    assert good.steps == task.epochs * task.steps_per_epoch()
    assert len(good.train_losses) == len(good.lrs) == good.steps
    assert good.lrs == [lr] * good.steps
    assert good.seconds < 10

    huge = train(task, optimizer="momentum", lr=100.0)
    if huge.diverged:
        assert math.isnan(huge.val_metric) and math.isnan(huge.test_metric)
        assert not math.isfinite(huge.train_losses[-1])
        assert huge.steps == len(huge.train_losses) - 1
    else:  # far worse than the good run: near chance, or no better than predicting the mean
        margin = 0.3 if task.mode == "max" else 0.5
        worse = (
            huge.val_metric < good.val_metric - margin
            if task.mode == "max"
            else not (huge.val_metric < good.val_metric + margin)
        )
        assert worse, (good.val_metric, huge.val_metric)


# -- the loader ---------------------------------------------------------------------------------


def test_loader_yields_every_training_example_once_per_epoch_and_reshuffles() -> None:
    task = get("mlp-digits")
    x_train, y_train = task.data().train
    loader = task.loader(seed=5)
    assert len(loader) == math.ceil(len(x_train) / task.batch_size)
    rows = {tuple(r.tolist()): i for i, r in enumerate(x_train)}
    orders = []
    for _ in range(3):
        batches = list(loader)
        assert len(batches) == len(loader)
        assert all(1 < len(xb) <= task.batch_size and len(xb) == len(yb) for xb, yb in batches)
        order = [rows[tuple(r.tolist())] for xb, _ in batches for r in xb]
        assert sorted(order) == list(range(len(x_train)))
        ys = torch.cat([yb for _, yb in batches])
        assert torch.equal(ys, y_train[order])
        orders.append(order)
    assert orders[0] != orders[1] and orders[1] != orders[2]
    assert loader.epoch == 3
    # the same seed gives the same epochs, another seed others
    again = task.loader(seed=5)
    for order in orders:
        assert [rows[tuple(r.tolist())] for xb, _ in again for r in xb] == order
    other = task.loader(seed=6)
    assert [rows[tuple(r.tolist())] for xb, _ in other for r in xb] != orders[0]


def test_val_and_test_loaders_keep_the_order() -> None:
    task = get("lstm-sequence")
    for split in ("val", "test"):
        x, y = task.data().split(split)
        loader = task.loader(seed=3, split=split)
        for _ in range(2):
            xs, ys = zip(*loader, strict=True)
            assert torch.equal(torch.cat(xs), x) and torch.equal(torch.cat(ys), y)
    with pytest.raises(ValueError, match="split"):
        task.loader(split="valid")


def test_loader_batches_are_balanced_and_validated() -> None:
    loader = BatchLoader(torch.arange(33.0), torch.arange(33), batch_size=32)
    assert [len(x) for x, _ in loader] == [17, 16]  # no batch of one for BatchNorm
    assert len(BatchLoader(torch.zeros(64, 2), torch.zeros(64), batch_size=32)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(torch.zeros(4), torch.zeros(4), batch_size=0)
    with pytest.raises(ValueError, match="same number of rows"):
        BatchLoader(torch.zeros(4), torch.zeros(3), batch_size=2)
    with pytest.raises(ValueError, match="seed"):
        BatchLoader(torch.zeros(4), torch.zeros(4), batch_size=2, seed=-1)


def test_a_task_with_a_bad_batch_size_is_named() -> None:
    task = get("logreg-digits")
    task.batch_size = 0
    with pytest.raises(
        TaskError, match=r"^task 'logreg-digits' has batch_size=0; a task's `batch_size` must be an int >= 1$"
    ):
        task.loader()


# -- load ---------------------------------------------------------------------------------------

USER_TASK = textwrap.dedent(
    """
    import torch
    from lrkit.tasks import Task, TaskData

    class Tiny(Task):
        name = "tiny"
        epochs = 2
        batch_size = 8

        def data(self):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(60, 3, generator=g)
            y = (x[:, 0] > 0).long()
            return TaskData(train=(x[:36], y[:36]), val=(x[36:48], y[36:48]), test=(x[48:], y[48:]))

        def model(self, seed):
            torch.manual_seed(seed)
            return torch.nn.Linear(3, 2)

    task = Tiny()

    def make():
        return Tiny()

    def make_with(size):
        return Tiny()

    def not_a_task():
        return 42

    class Abstract(Task):
        pass

    class Other:
        pass

    number = 3
    """
)


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_tasks.py"
    path.write_text(USER_TASK)
    return path


@pytest.mark.parametrize("attr", ["task", "Tiny", "make"])
def test_load_from_a_file(task_file: Path, attr: str) -> None:
    task = load(f"{task_file}:{attr}")
    assert isinstance(task, Task) and task.name == "tiny"
    result = train(task, optimizer="sgd", lr=0.5)
    assert result.steps == 2 * 5 and 0.0 <= result.val_metric <= 1.0


def test_load_from_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lrkit_user_task_mod.py").write_text(USER_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lrkit_user_task_mod", raising=False)
    try:
        assert load("lrkit_user_task_mod:task").name == "tiny"
        assert load("lrkit_user_task_mod:make").name == "tiny"
        with pytest.raises(TaskError, match=r"lrkit_user_task_mod has no attribute 'missing'"):
            load("lrkit_user_task_mod:missing")
    finally:
        sys.modules.pop("lrkit_user_task_mod", None)


def test_load_a_name_or_an_instance() -> None:
    assert load("mlp-spirals").name == "mlp-spirals"
    task = get("logreg-digits")
    assert load(task) is task


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (":missing", r"has no attribute 'missing'"),
        (":number", r"expected a Task instance, a Task subclass or a callable returning a Task, got int"),
        (":not_a_task", r"the callable returned int, not a lrkit Task"),
        (":make_with", r"cannot be called without arguments"),
        (":Abstract", r"Abstract is abstract; it must implement data, model"),
        (":Other", r"the class Other is not a lrkit Task subclass"),
        (":task.nope", r"has no attribute 'nope'"),
        (":", r"expected 'path/to/file.py:attr' or 'module:attr'"),
        (":1x", r"expected 'path/to/file.py:attr' or 'module:attr'"),
    ],
)
def test_load_errors_name_the_reference(task_file: Path, suffix: str, message: str) -> None:
    ref = f"{task_file}{suffix}"
    with pytest.raises(TaskError, match=message) as info:
        load(ref)
    assert repr(ref) in str(info.value)


def test_load_errors_for_missing_files_and_modules(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"no such file") as info:
        load(f"{tmp_path}/absent.py:task")
    assert "absent.py:task" in str(info.value)
    with pytest.raises(TaskError, match=r"'no_such_module_xyz:task': no module named 'no_such_module_xyz'"):
        load("no_such_module_xyz:task")
    with pytest.raises(TaskError, match=r"no module named 'lrkit.no_such'"):
        load("lrkit.no_such:task")
    with pytest.raises(TaskError, match=r"name its attribute: 'exp.py:task'"):
        load("exp.py")
    with pytest.raises(TaskError, match="must be a string or a Task"):
        load(3)  # type: ignore[arg-type]


def test_a_task_file_imports_the_modules_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As for ``python ut/exp.py``, the file's folder is first on sys.path while it runs; it stays
    there, so a neighbour imported later (here by `model`, as a worker process may) is found too."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = tmp_path / "ut"
    folder.mkdir()
    (folder / "lrkit_neighbour_tiny.py").write_text(USER_TASK)
    (folder / "lrkit_neighbour_net.py").write_text(
        "import torch\n\ndef net():\n    return torch.nn.Linear(3, 2)\n"
    )
    (folder / "exp.py").write_text(
        textwrap.dedent(
            """
            import torch
            from lrkit_neighbour_tiny import Tiny

            class Lazy(Tiny):
                def model(self, seed):
                    from lrkit_neighbour_net import net

                    torch.manual_seed(seed)
                    return net()

            task = Lazy()
            """
        )
    )
    try:
        task = load(f"{folder / 'exp.py'}:task")
        assert task.name == "tiny" and sys.path[0] == str(folder)
        assert train(task, optimizer="sgd", lr=0.5).steps == 2 * 5
        load(f"{folder / 'exp.py'}:task")  # loading it again adds no second entry
        assert sys.path.count(str(folder)) == 1
    finally:
        for name in ("lrkit_neighbour_tiny", "lrkit_neighbour_net"):
            sys.modules.pop(name, None)


def test_an_import_error_in_a_user_file_is_a_task_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = tmp_path / "broken.py"
    path.write_text("import math\nimport no_such_dependency_xyz\n")
    with pytest.raises(TaskError) as info:
        load(f"{path}:task")
    assert str(info.value) == (
        f"task reference '{path}:task': {path}, line 2: No module named 'no_such_dependency_xyz'"
    )
    assert str(tmp_path) not in sys.path  # a file that could not be loaded leaves sys.path alone


def test_other_errors_inside_a_user_file_propagate_with_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("x = 1 / 0\n")
    with pytest.raises(ZeroDivisionError) as info:
        load(f"{path}:task")
    assert any("broken.py:task" in note for note in getattr(info.value, "__notes__", []))


# -- train and the optimizers -------------------------------------------------------------------


def test_make_optimizer() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert set(OPTIMIZERS) == {"sgd", "momentum", "adam"}
    sgd = make_optimizer("sgd", params, 0.1)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0
    assert make_optimizer("momentum", params, 0.1).param_groups[0]["momentum"] == 0.9
    assert isinstance(make_optimizer("adam", params, 1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'; valid names: sgd, momentum, adam"):
        make_optimizer("adamw", params, 0.1)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="lr"):
            make_optimizer("sgd", params, bad)


def test_train_is_reproducible_from_the_seed() -> None:
    task = get("logreg-digits")
    a = train(task, optimizer="momentum", lr=0.05, epochs=2, seed=3)
    b = train(task, optimizer="momentum", lr=0.05, epochs=2, seed=3)
    c = train(task, optimizer="momentum", lr=0.05, epochs=2, seed=4)
    assert isinstance(a, RunResult)
    assert a.train_losses == b.train_losses and a.val_metric == b.val_metric
    assert a.train_losses != c.train_losses


def test_train_schedules() -> None:
    task = get("logreg-digits")
    steps = 2 * task.steps_per_epoch()
    r = train(task, optimizer="momentum", lr=0.1, schedule="onecycle", epochs=2)
    assert r.lrs == pytest.approx(list(onecycle(0.1, steps=steps)(np.arange(steps))))
    r = train(task, optimizer="sgd", lr=0.1, schedule="onecycle", epochs=2)  # no momentum cycle
    assert r.lrs[0] == pytest.approx(0.1 / 25)
    r = train(task, optimizer="adam", lr=1.0, schedule="cosine(0.01, steps=68)", epochs=2)
    assert r.lrs[0] == 0.01 and r.lrs[-1] < 1e-5  # the spec is used as it is
    r = train(task, optimizer="adam", lr=1.0, schedule=onecycle(0.01, steps=10), epochs=1)
    assert max(r.lrs) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="epochs"):
        train(task, optimizer="adam", lr=1e-3, epochs=0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(task, optimizer="lbfgs", lr=1e-3)


def test_train_at_an_lr_too_large_for_the_parameters_float_type_diverges() -> None:
    """Beyond float32's range torch cannot even apply the step (it raised a RuntimeError): the
    run diverges, as it does at a large LR that float32 can hold."""
    task = get("logreg-digits")
    for optimizer, lr, schedule in (("adam", 1e39, "constant"), ("sgd", 1e308, "onecycle")):
        r = train(task, optimizer=optimizer, lr=lr, schedule=schedule, epochs=1)
        assert r.diverged and r.steps == 0 and len(r.train_losses) == 1, (optimizer, lr)
        assert math.isnan(r.val_metric) and math.isnan(r.test_metric)


def test_train_names_a_task_with_bad_epochs() -> None:
    task = get("logreg-digits")
    task.epochs = 0
    with pytest.raises(
        TaskError, match=r"^train: task 'logreg-digits' has epochs=0; a task's `epochs` must be an int >= 1"
    ):
        train(task, optimizer="adam", lr=1e-3)
    assert train(task, optimizer="adam", lr=1e-3, epochs=1).steps == task.steps_per_epoch()


def test_train_clips_gradients_when_asked() -> None:
    """At an LR where plain momentum SGD diverges on the digits, gradients clipped to a norm of
    1 keep it finite; a huge clip norm never binds and changes nothing."""
    task = get("logreg-digits")
    raw = train(task, optimizer="momentum", lr=1000.0, epochs=2)
    clipped = train(task, optimizer="momentum", lr=1000.0, epochs=2, clip_grad_norm=1.0)
    loose = train(task, optimizer="momentum", lr=0.05, epochs=1, clip_grad_norm=1e9)
    assert raw.diverged and not clipped.diverged
    assert loose.train_losses == train(task, optimizer="momentum", lr=0.05, epochs=1).train_losses
    with pytest.raises(
        ValueError, match="`clip_grad_norm` must be a finite number > 0 or None, got clip_grad_norm=0"
    ):
        train(task, optimizer="adam", lr=1e-3, clip_grad_norm=0)


def test_onecycle_cycles_momentum_only_for_momentum_optimizers(monkeypatch: pytest.MonkeyPatch) -> None:
    task = get("logreg-digits")
    built: dict[str, torch.optim.Optimizer] = {}
    for name in ("sgd", "momentum", "adam"):

        def spy(params: Any, lr: float, name: str = name) -> torch.optim.Optimizer:
            built[name] = OPTIMIZERS_ORIGINAL[name](params, lr)
            return built[name]

        monkeypatch.setitem(OPTIMIZERS, name, spy)
    for name in ("sgd", "momentum", "adam"):
        train(task, optimizer=name, lr=0.1, schedule="onecycle", epochs=1)
    assert built["sgd"].param_groups[0]["momentum"] == 0  # plain SGD stays plain
    assert built["momentum"].param_groups[0]["momentum"] == pytest.approx(0.95)  # end of the cycle
    assert built["adam"].param_groups[0]["betas"][0] == pytest.approx(0.95)


def test_train_a_given_model_in_place() -> None:
    task = get("logreg-digits")
    model = task.model(0)
    weight = model.get_parameter("weight")
    before = weight.detach().clone()
    result = train(task, optimizer="adam", lr=1e-2, epochs=1, model=model)
    assert model.training and not torch.equal(weight.detach(), before)
    model.eval()
    x, y = task.data().val
    with torch.no_grad():
        assert task.score(model(x), y) == result.val_metric


def test_evaluate_split_puts_back_each_submodules_mode() -> None:
    """A frozen BatchNorm (in eval mode inside a model in train mode) stays frozen."""
    from lrkit.tasks import evaluate_split

    task = get("cnn-digits")
    model = task.model(0)
    model.train()
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen.eval()
    before = [m.training for m in model.modules()]
    evaluate_split(task, model, "val")
    assert [m.training for m in model.modules()] == before and not frozen.training
