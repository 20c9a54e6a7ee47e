"""The ``lrkit`` command line: schedule show/plot/lint, the demo gallery, and error handling."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.table import Table
from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.cli._common import PIPE_WIDTH, make_console
from lrkit.plot import plot_schedules
from lrkit.schedules import from_config, parse

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LRKIT = Path(sys.executable).parent / "lrkit"

runner = CliRunner()


def _cosine(t: int, lr: float, steps: int, end: float = 0.0) -> float:
    return end + (lr - end) * 0.5 * (1.0 + math.cos(math.pi * min(t, steps) / steps))


def _cells(output: str) -> dict[int, list[str]]:
    """Table rows of ``schedule show`` as {step: [other cells]}."""
    rows: dict[int, list[str]] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) >= 2 and cells[0].isdigit():
            rows[int(cells[0])] = cells[1:]
    return rows


def test_show_prints_the_closed_form() -> None:
    result = runner.invoke(app, ["schedule", "show", "cosine(0.1, steps=100, end=0.001)", "--steps", "100"])
    assert result.exit_code == 0, result.output
    rows = _cells(result.stdout)
    assert rows[0] == ["0.1"]
    assert 99 in rows  # the last step is always shown
    assert 15 <= len(rows) <= 25  # about 20 rows by default
    for t in (5, 50, 99):
        assert float(rows[t][0]) == pytest.approx(_cosine(t, 0.1, 100, 0.001), rel=1e-5)
    assert "momentum" not in result.stdout


def test_show_every_and_momentum_column() -> None:
    args = ["schedule", "show", "onecycle(0.1, steps=100)", "-n", "100", "--every", "10"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "momentum" in result.stdout
    rows = _cells(result.stdout)
    assert sorted(rows) == [*range(0, 100, 10), 99]
    assert float(rows[0][0]) == pytest.approx(0.1 / 25)
    assert float(rows[0][1]) == pytest.approx(0.95)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "lr.png"
    result = runner.invoke(
        app,
        [
            "schedule",
            "plot",
            "warmup(10) >> cosine(0.1, steps=90)",
            "onecycle(0.1, steps=100)",
            "--steps",
            "100",
            "-o",
            str(out),
            "--log",
        ],
    )
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_show_and_plot_default_to_where_the_schedule_ends(tmp_path: Path) -> None:
    shown = runner.invoke(app, ["schedule", "show", "warmup(10) >> cosine(0.1, steps=90)"])
    assert shown.exit_code == 0, shown.output
    assert max(_cells(shown.stdout)) == 99 and "100 steps" in shown.stdout
    out = tmp_path / "lr.png"
    # several schedules: drawn up to where the longest ends
    drawn = runner.invoke(
        app, ["schedule", "plot", "cosine(0.1, steps=50)", "onecycle(0.1, steps=1000)", "-o", str(out)]
    )
    assert drawn.exit_code == 0, drawn.output
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    for command in (["show"], ["plot", "-o", str(out)]):
        endless = runner.invoke(app, ["schedule", *command, "exponential(0.1, factor=0.5)"])
        assert endless.exit_code == 2
        assert "give --steps: 'exponential(0.1, factor=0.5)' has no end of its own" in endless.output


def test_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # a None entry makes its import fail
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'lrkit\[plot\]'"):
        plot_schedules("cosine(0.1, steps=10)", 10)
    result = runner.invoke(
        app, ["schedule", "plot", "cosine(0.1, steps=10)", "-n", "10", "-o", str(tmp_path / "x.png")]
    )
    assert result.exit_code == 1
    assert "pip install 'lrkit[plot]'" in result.stderr


@pytest.mark.parametrize("steps", [0, -1])
def test_plot_schedules_rejects_bad_steps(steps: int) -> None:
    with pytest.raises(ValueError, match=rf"`steps` must be an integer >= 1, got steps={steps}"):
        plot_schedules("cosine(0.1, steps=10)", steps)


def test_lint_exit_codes() -> None:
    clean = runner.invoke(app, ["schedule", "lint", "warmup(10) >> cosine(0.1, steps=90)", "--steps", "100"])
    assert clean.exit_code == 0, clean.output
    assert "no problems found" in clean.stdout

    short = runner.invoke(app, ["schedule", "lint", "cosine(0.1, steps=50)", "--steps", "100"])
    assert short.exit_code == 1, short.output
    assert "horizon-short" in short.stdout
    assert "ends at step 50" in short.stdout


@pytest.mark.parametrize("command", ["show", "lint", "plot"])
def test_malformed_spec_is_a_clean_error(command: str, tmp_path: Path) -> None:
    args = ["schedule", command, "cosine(0.1, stepz=100)", "--steps", "100"]
    if command == "plot":
        args += ["-o", str(tmp_path / "x.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "invalid schedule spec" in result.stderr
    assert "did you mean 'steps'" in result.stderr
    assert "^" in result.stderr  # the caret under the problem
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_bad_steps_is_a_clean_error(steps: str) -> None:
    result = runner.invoke(app, ["schedule", "show", "cosine(0.1, steps=10)", "--steps", steps])
    assert result.exit_code == 2
    assert f"got {steps}" in result.output
    assert "Traceback" not in result.output


def test_demo_writes_the_gallery(tmp_path: Path) -> None:
    out = tmp_path / "gallery"
    result = runner.invoke(
        app, ["demo", "-o", str(out), "--task", "logreg-digits", "--seeds", "1", "--trials", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "lrkit schedule gallery" in result.stdout and "onecycle(0.1," in result.stdout

    assert (out / "gallery.png").read_bytes().startswith(PNG_SIGNATURE)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert "warmup(10) &gt;&gt; cosine(0.1, steps=90)" in page

    entries = json.loads((out / "gallery.json").read_text(encoding="utf-8"))["schedules"]
    assert len(entries) == 14
    for entry in entries:
        s = from_config(entry["config"])
        assert s.to_config() == entry["config"]
        assert s.fresh() == parse(entry["spec"])
    plateau = next(e for e in entries if e["spec"].startswith("plateau"))
    assert plateau["metrics"] and plateau["config"]["reductions"]  # the LR was reduced

    # then the tour of a task, added to the same page: range test, comparison, tuning
    page = (out / "index.html").read_text(encoding="utf-8")
    assert (out / "lr_find.png").read_bytes().startswith(PNG_SIGNATURE)
    finder = json.loads((out / "lr_find.json").read_text(encoding="utf-8"))
    assert finder["target"] == "constant" and finder["verification"]["on"] == "validation loss"
    for heading in (
        "1. LR range test: logreg-digits",
        "2. Schedules at the suggested LR",
        "3. Tuning the LR",
    ):
        assert heading in page
    lr = finder["suggestion"]
    assert f"constant({lr:.3g})" in page and f"cosine({lr:.3g}, steps=340)" in page and "multistep(" in page
    tuned = json.loads((out / "tuning.json").read_text(encoding="utf-8"))
    assert len(tuned["trials"]) == 4 and tuned["pruner"] == "asha" and tuned["test_metric"] > 0.8
    assert all(lr / 10 * 0.999 <= t["params"]["lr"] <= lr * 10 * 1.001 for t in tuned["trials"])
    assert tuned["trials"][0]["params"]["lr"] == float(f"{lr:.3g}")  # the LR the comparison trained
    assert page.count("data:image/png;base64,") == 5  # gallery, range test, curves, history, lr
    assert "refit on train+val" in result.stdout and "test accuracy" in result.stdout
    assert (out / "tune" / "final.pt").exists()


def test_installed_script_without_torch() -> None:
    result = subprocess.run(
        [str(LRKIT), "schedule", "show", "cosine(0.1, steps=10)", "--steps", "10"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = _cells(result.stdout)
    assert sorted(rows) == list(range(10))
    assert float(rows[1][0]) == pytest.approx(_cosine(1, 0.1, 10), rel=1e-5)

    probe = subprocess.run(
        [sys.executable, "-c", "import sys, lrkit.cli, lrkit.plot; sys.exit('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, "importing the CLI imported torch"


def test_piped_output_keeps_wide_tables_whole(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """In a file or a pipe a table takes the columns it needs (up to PIPE_WIDTH), not rich's 80
    with its numbers cut to '0.000…'; COLUMNS still rules where it is set."""
    table = Table(*[f"column {i}" for i in range(12)])
    table.add_row(*[f"0.000{i}23" for i in range(12)])
    monkeypatch.delenv("COLUMNS", raising=False)
    make_console().print(table)
    wide = capsys.readouterr().out
    assert "…" not in wide and "0.000523" in wide and 80 < max(map(len, wide.splitlines())) <= PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "60")
    make_console().print(table)
    assert max(map(len, capsys.readouterr().out.splitlines())) <= 60


@pytest.mark.parametrize("command", ["find", "train", "compare", "explain", "tune", "demo"])
def test_every_task_command_takes_the_task_as_argument_or_option(command: str, tmp_path: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(app, [command, "mlp-digits", "--task", "mlp-digits", "-o", str(tmp_path)])
    assert both.exit_code == 2 and "either as an argument or with --task, not both" in both.output
    unknown = runner.invoke(app, [command, "no-such-task", "-o", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown task 'no-such-task'" in unknown.output, unknown.output
    if command != "demo":  # the tour has a task of its own
        neither = runner.invoke(app, [command, "-o", str(tmp_path)])
        assert neither.exit_code == 2
        example = f"give a task: `lrkit {command} --task mlp-digits` or `lrkit {command} path/to/"
        assert example in neither.output


def test_train_takes_a_task_as_its_argument(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "mlp-digits", "--epochs", "1", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "history.json").read_text())["task"] == "mlp-digits"


def test_train_a_task_file_that_imports_a_module_beside_it(tmp_path: Path) -> None:
    """``lrkit train ut/exp.py:task`` where exp.py imports ut/mymodel.py, run from elsewhere, as
    ``python ut/exp.py`` would run it."""
    folder = tmp_path / "ut"
    folder.mkdir()
    (folder / "mymodel.py").write_text(
        "from lrkit.tasks import LogregDigits\n\nclass Mine(LogregDigits):\n    pass\n"
    )
    (folder / "exp.py").write_text("from mymodel import Mine\n\ntask = Mine()\n")
    res = subprocess.run(
        [str(LRKIT), "train", "ut/exp.py:task", "--epochs", "1", "-o", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "status: completed" in res.stdout


def test_train_reports_an_import_error_in_a_task_file_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = tmp_path / "exp.py"
    path.write_text("from no_such_model_xyz import Net\n")
    res = CliRunner().invoke(app, ["train", f"{path}:task", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert res.output == (
        f"error: task reference '{path}:task': {path}, line 1: No module named 'no_such_model_xyz'\n"
    )


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        (
            "epochs = 0",
            "error: task 'bad' has epochs=0; a task's `epochs` must be an int >= 1, or pass --epochs",
        ),
        ("batch_size = 0", "error: task 'bad' has batch_size=0; a task's `batch_size` must be an int >= 1"),
    ],
)
def test_train_names_the_task_attribute_not_a_flag(
    attribute: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = tmp_path / "bad_task.py"
    path.write_text(
        "from lrkit.tasks import LogregDigits\n\n"
        f"class Bad(LogregDigits):\n    name = 'bad'\n    {attribute}\n\n"
        "task = Bad()\n"
    )
    res = CliRunner().invoke(app, ["train", f"{path}:task", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert res.output.strip() == message


@pytest.mark.parametrize("command", ["find", "compare", "explain", "tune"])
def test_every_command_names_a_task_with_bad_epochs(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = tmp_path / "bad_task.py"
    path.write_text(
        "from lrkit.tasks import LogregDigits\n\n"
        "class Bad(LogregDigits):\n    name = 'bad'\n    epochs = 0\n\ntask = Bad()\n"
    )
    res = CliRunner().invoke(app, [command, f"{path}:task", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    told = "error: task 'bad' has epochs=0; a task's `epochs` must be an int >= 1"
    assert res.output.strip() == told + ("" if command == "find" else ", or pass --epochs")


@pytest.mark.parametrize("args", [["--lr", "1e39"], ["--lr", "1e308", "--schedule", "onecycle"]])
def test_train_at_an_lr_beyond_float32_reports_a_diverged_run(args: list[str], tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "logreg-digits", "--epochs", "1", *args, "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "status: diverged" in res.output
    assert json.loads((tmp_path / "history.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("command", ["find", "train", "compare", "explain", "tune", "demo"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_work(
    command: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = CliRunner().invoke(app, [command, "mlp-digits", "-o", str(blocker / "out")])
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: --output must be a folder lrkit can write to, got --output=")


@pytest.mark.parametrize(
    ("command", "optimizer"), [("find", "dog"), ("explain", "dog"), ("explain", "prodigy")]
)
def test_find_and_explain_refuse_a_learning_rate_free_optimizer_in_the_command_lines_words(
    command: str, optimizer: str, tmp_path: Path
) -> None:
    args = [command, "logreg-digits", "--optimizer", optimizer, "-o", str(tmp_path / "out")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"error: lrkit {command} cannot use --optimizer {optimizer}: "), line
    assert f"lrkit tune --optimizer {optimizer}" in line and "range test" in line
    assert "`" not in line and "lrkit.tune" not in line and "lr=" not in line
    assert not (tmp_path / "out").exists()


def test_demo_on_a_full_disk_says_so_and_leaves_the_page_whole(tmp_path: Path) -> None:
    """A write that fails in the tour (here: files cannot grow past the gallery's page, as on a
    full disk) says so in one line; the page stays whole, and the range test's files, written
    with its section of the page, are not there without it."""
    import resource

    from lrkit.cli._demo import build_entries, write_gallery

    out = tmp_path / "demo"
    write_gallery(out, build_entries())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # room for the gallery and the range test's figure, not for the page with the figure added;
    # Python ignores SIGXFSZ, and a write beyond fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before["index.html"]) + 4096, hard))
    try:
        res = runner.invoke(app, ["demo", "-o", str(out), "--task", "logreg-digits", "--trials", "2"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"error: cannot write to {out}: [Errno 27] File too large" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _until_running(proc: subprocess.Popen[str]) -> None:
    """Wait until the command line in `proc` has set its SIGTERM handler (``/proc/PID/status``
    lists the signals a process catches), then a second more: the command is at work."""
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught >> (signal.SIGTERM - 1) & 1:
            break
        time.sleep(0.05)
    time.sleep(1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_a_command_with_one_line(signum: int, tmp_path: Path) -> None:
    """Ctrl-C, and SIGTERM alike (so that cleanup code runs), end a command with exit status 130
    and the line ``interrupted``, no traceback; a training stopped writes nothing."""
    out = tmp_path / "out"
    args = ["train", "--task", "logreg-digits", "--epochs", "2000", "-o", str(out)]  # over a minute
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrkit.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        _until_running(proc)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.splitlines()[-1:] == ["interrupted"] and "Traceback" not in err, err
    assert not out.exists()
