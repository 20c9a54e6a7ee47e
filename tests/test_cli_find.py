"""`lrkit find` on a built-in task and on a user's task file."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.finder import FinderResult

runner = CliRunner()


def test_find_on_a_built_in_task_writes_table_png_and_json(tmp_path: Path) -> None:
    out = tmp_path / "find"
    res = runner.invoke(app, ["find", "--task", "logreg-digits", "--optimizer", "adam", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "LR range test: logreg-digits, adam, for a constant LR\n" in res.output  # one line
    for rule in ("steepest", "valley", "minimum/10", "slide", "lrkit"):
        assert rule in res.output
    assert "suggestion:" in res.output and "the 'lrkit' reading of the curve" in res.output
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = FinderResult.from_dict(json.loads((out / "lr_find.json").read_text()))
    assert 1e-5 < result.suggestion < 1.0
    assert f"{result.suggestion:.3g}" in res.output


def test_find_with_verify_and_onecycle(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["find", "--task", "mlp-spirals", "--optimizer", "adamw", "--schedule", "onecycle", "--verify"]
        + ["-o", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "lr_find.json").read_text())
    assert data["target"] == "onecycle"
    v = data["verification"]
    assert v["on"] == "validation loss"
    assert v["total_steps"] <= 870  # one training run of mlp-spirals
    assert "verified on validation loss" in res.output
    # the suggestion says how it follows from the verified candidates
    out = " ".join(res.output.split())
    assert v["vectorized"] and "steps each, trained together," in out
    # a table of the candidates, the one taken marked
    rows = [line for line in res.output.splitlines() if "taken (" in line]
    assert len(rows) == 1 and f"{v['best']:.3g} " in rows[0]
    assert all(f" {c:.3g} " in res.output for c in v["candidates"])
    assert data["suggestion"] == pytest.approx(v["best"] * v["horizon_factor"])
    assert f"suggestion: {data['suggestion']:.3g} ({v['best']:.3g}, the smallest candidate" in out
    assert f"= {v['horizon_factor']:.3g} for a run" in out


def test_find_on_a_user_task_file(tmp_path: Path) -> None:
    task_file = tmp_path / "exp.py"
    task_file.write_text(
        textwrap.dedent(
            """
            import torch
            from lrkit.tasks import Task, TaskData

            class Blobs(Task):
                name = "blobs"
                metric = "accuracy"
                mode = "max"
                epochs = 3
                batch_size = 32

                def data(self):
                    g = torch.Generator().manual_seed(0)
                    x = torch.randn(300, 2, generator=g)
                    y = (x[:, 0] + x[:, 1] > 0).long()
                    return TaskData(train=(x[:200], y[:200]), val=(x[200:250], y[200:250]),
                                    test=(x[250:], y[250:]))

                def model(self, seed):
                    torch.manual_seed(seed)
                    return torch.nn.Linear(2, 2)

            task = Blobs()
            """
        )
    )
    res = runner.invoke(app, ["find", f"{task_file}:task", "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "blobs" in res.output


def test_find_on_a_task_that_cannot_learn_says_so(tmp_path: Path) -> None:
    task_file = tmp_path / "stuck.py"
    task_file.write_text(
        textwrap.dedent(
            """
            import torch
            from lrkit.tasks import Task, TaskData

            class Stuck(torch.nn.Module):  # its output never depends on its weights
                def __init__(self):
                    super().__init__()
                    self.w = torch.nn.Parameter(torch.zeros(2, 2))

                def forward(self, x):
                    return x[:, :2] * 0.0 + self.w.sum() * 0.0

            class Task_(Task):
                name = "stuck"
                metric = "accuracy"
                mode = "max"
                epochs = 3
                batch_size = 32

                def data(self):
                    g = torch.Generator().manual_seed(0)
                    x = torch.randn(300, 2, generator=g)
                    y = (x[:, 0] > 0).long()
                    return TaskData(train=(x[:200], y[:200]), val=(x[200:250], y[200:250]),
                                    test=(x[250:], y[250:]))

                def model(self, seed):
                    return Stuck()

            task = Task_()
            """
        )
    )
    res = runner.invoke(app, ["find", f"{task_file}:task", "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "status: flat; useful interval: none" in res.output
    assert "neither fell nor diverged" in res.output
    data = json.loads((tmp_path / "o" / "lr_find.json").read_text())
    assert data["status"] == "flat" and data["suggestion"] is None
    # no rule reads the rounding ripples of a constant loss as a curve
    assert all(v is None for v in data["suggestions"].values()), data["suggestions"]


def test_find_warnings_give_the_options_to_change(tmp_path: Path) -> None:
    """The library's advice (raise `end_lr`, verify with `val_loader`) in the command's words."""
    res = runner.invoke(app, ["find", "--task", "mlp-digits", "--end-lr", "0.01", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert any("still falling at --end-lr=0.01: raise --end-lr" in w for w in warned), res.output
    assert not any("`" in w or "end_lr" in w or "val_loader" in w for w in warned), warned


def test_find_errors_are_clean() -> None:
    res = runner.invoke(app, ["find", "--task", "no-such-task"])
    assert res.exit_code == 2 and "no-such-task" in res.output and "mlp-digits" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["find"])
    assert res.exit_code == 2 and "give a task" in res.output
    res = runner.invoke(app, ["find", "--task", "mlp-digits", "--optimizer", "sgdd"])
    assert res.exit_code == 2 and "momentum" in res.output
    res = runner.invoke(app, ["find", "--task", "mlp-digits", "--start-lr", "1", "--end-lr", "0.1"])
    assert res.exit_code == 2 and "--start-lr must be < --end-lr, got --start-lr=1.0" in res.output
    # the library's argument names are spoken as the options that set them
    res = runner.invoke(app, ["find", "--task", "mlp-digits", "--schedule", "cosine"])
    message = "--schedule must be one of constant, onecycle, got --schedule='cosine'"
    assert res.exit_code == 2 and message in res.output
    res = runner.invoke(app, ["find", "--task", "mlp-digits", "--seeds", "0"])
    assert res.exit_code == 2 and "--seeds must be an integer >= 1, got --seeds=0" in res.output
    for device, message in (
        ("gpu0", "--device must name a torch device such as 'cpu', 'cuda' or 'cuda:1', got 'gpu0'"),
        ("cuda:99", "--device 'cuda:99' is not available here"),
        ("xla", "--device 'xla' is not available here (this torch build cannot make tensors on 'xla')"),
    ):
        res = runner.invoke(app, ["find", "--task", "mlp-digits", "--device", device])
        assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
        assert "Traceback" not in res.output and len(res.output) < 300  # not torch's list of backends


def test_find_with_amp_on_the_cpu(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["find", "--task", "logreg-digits", "--optimizer", "adam", "--device", "cpu", "--amp"]
        + ["-o", str(tmp_path)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    result = FinderResult.from_dict(json.loads((tmp_path / "lr_find.json").read_text()))
    assert 1e-5 < result.suggestion < 1.0


def test_find_clips_gradients_as_the_training_does(tmp_path: Path) -> None:
    """Clipped to 0.1, momentum SGD on the digits no longer diverges within the sweep, and the
    suggestion moves up; a clip norm that is not > 0 is refused with the argument's name."""
    results = []
    for extra in ([], ["--clip-grad-norm", "0.1"]):
        out = tmp_path / str(len(extra))
        res = runner.invoke(
            app, ["find", "--task", "mlp-digits", "--optimizer", "momentum", "-o", str(out), *extra]
        )
        assert res.exit_code == 0, res.output
        results.append(FinderResult.from_dict(json.loads((out / "lr_find.json").read_text())))
    raw, clipped = results
    assert raw.status == "diverged" and clipped.status != "diverged"
    assert clipped.suggestion > 3 * raw.suggestion
    res = runner.invoke(app, ["find", "--task", "mlp-digits", "--clip-grad-norm", "0"])
    assert res.exit_code == 2 and "--clip-grad-norm must be a finite number > 0" in res.output


def test_the_candidates_table_marks_the_one_taken_the_ties_and_the_diverged() -> None:
    from rich.console import Console

    from lrkit.cli._find import _candidates
    from lrkit.finder import Verification

    v = Verification(
        candidates=[1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1],
        scores=[0.9, 0.52, 0.5, 0.6, math.inf],
        on="validation loss",
        chosen=3.16e-3 * 0.447,
        steps=40,
        total_steps=200,
        seconds=0.1,
        vectorized=True,
        best=3.16e-3,
        horizon_factor=0.447,
        errors=[0.05, 0.03, 0.0, 0.04, math.nan],
    )
    console = Console(width=120, record=True)
    console.print(_candidates(v))
    rows = {line.split()[1]: line for line in console.export_text().splitlines() if line.count("│") > 2}
    assert "taken (tied)" in rows["0.00316"] and "best" in rows["0.01"] and "diverged" in rows["0.1"]
    assert not any(word in rows["0.001"] + rows["0.0316"] for word in ("taken", "tied", "best"))


def test_find_on_a_full_disk_leaves_the_earlier_outputs_whole(tmp_path: Path) -> None:
    """A write that fails (here: files cannot grow past 8 kB, as on a full disk) says so in one
    line and leaves the earlier lr_find.png and lr_find.json as they were, with no temporary file."""
    import resource

    args = ["find", "--task", "logreg-digits", "--steps", "40", "-o", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))  # Python ignores SIGXFSZ: EFBIG instead
    try:
        res = runner.invoke(app, [*args, "--seed", "1"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"error: cannot write to {tmp_path}: [Errno 27] File too large" in res.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
