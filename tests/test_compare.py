"""`compare`, `explain`, their plots and report, and the ``train`` / ``compare`` / ``explain`` commands."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.cli._compare import spread_values
from lrkit.plot import plot_training
from lrkit.report import write_report
from lrkit.train import CompareResult, History, Run, compare, explain

PNG = b"\x89PNG\r\n\x1a\n"
TASK = "logreg-digits"

runner = CliRunner()


def _table_rows(text: str) -> list[str]:
    """The body rows of the Markdown table in `text` (header and rule left out)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return rows[2:]


def test_compare_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "--task", TASK, "--schedules", "constant", "onecycle", "cosine(0.01, steps=68)"]
    args += ["--optimizers", "adam", "momentum", "--lrs", "1e-3", "1e-2", "--seeds", "2", "--epochs", "2"]
    res = runner.invoke(app, [*args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    # 2 keyword schedules x 2 optimizers x 2 LRs, and the explicit spec once per optimizer
    assert (out / "curves.png").read_bytes()[:8] == PNG
    rows = _table_rows((out / "table.md").read_text())
    assert len(rows) == 2 * 2 * 2 + 2
    assert all(re.search(r"\| 0\.\d+ ± [\d.e-]+ \| 0/2 \|", r) for r in rows), rows
    data = json.loads((out / "histories.json").read_text())
    histories = [History.from_dict(h) for run in data["runs"] for h in run["histories"]]
    assert len(histories) == 10 * 2
    assert {h.seed for h in histories} == {0, 1}
    assert all(h.status == "completed" and len(h.epochs) == 2 and h.steps == 68 for h in histories)
    result = CompareResult.from_dict(data)
    assert [r.lr for r in result.runs].count(None) == 2  # the explicit spec sets its own LR
    assert {r.lr for r in result.runs if r.schedule == "constant"} == {1e-3, 1e-2}
    # printed: each run's mean final metric, not twenty histories
    text = repr(result)
    assert text.startswith(f"CompareResult(task='{TASK}', metric='accuracy', epochs=2, runs={{'")
    assert len(text) < 800
    assert f"'{result.runs[0].label}': {result.runs[0].metric_mean:.4g}" in text
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from elsewhere
    for run in result.runs:
        assert run.label.replace(",", "") in page.replace(",", "")


def test_compare_lrs_auto_uses_the_range_test(tmp_path: Path) -> None:
    out = tmp_path / "auto"
    res = runner.invoke(
        app,
        ["compare", "--task", TASK, "--schedules", "constant;onecycle", "--optimizers", "adam"]
        + ["--lrs", "auto", "--epochs", "2", "-o", str(out)],
    )
    assert res.exit_code == 0, res.output
    result = CompareResult.from_dict(json.loads((out / "histories.json").read_text()))
    assert result.lr_source == "range test"
    assert set(result.suggestions) == {"adam/constant", "adam/onecycle"}
    by_schedule = {r.schedule: r for r in result.runs}
    assert by_schedule["constant"].lr == result.suggestions["adam/constant"]
    assert by_schedule["onecycle"].lr == result.suggestions["adam/onecycle"]
    assert all(1e-4 < r.lr < 1.0 and r.metric_mean > 0.8 for r in result.runs if r.lr is not None)


def test_compare_lrs_auto_keeps_the_multiplier_of_learning_rate_free_optimizers(tmp_path: Path) -> None:
    result = compare(TASK, ["constant"], ["dog"], lrs="auto", epochs=1, workers=1)
    assert result.suggestions == {"dog/constant": 1.0}  # no range test: it does not apply
    assert [r.lr for r in result.runs] == [1.0]
    res = runner.invoke(
        app,
        ["compare", "--task", TASK, "--schedules", "constant", "--optimizers", "ldog"]
        + ["--lrs", "auto", "--epochs", "1", "--workers", "1", "-o", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    assert "ldog/constant: 1 (learning-rate-free: its default multiplier, no range test)" in res.output
    assert "range test, ldog" not in res.output


def test_explain_writes_three_runs_with_interpretations(tmp_path: Path) -> None:
    out = tmp_path / "explain"
    res = runner.invoke(app, ["explain", "--task", TASK, "--epochs", "2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    result = CompareResult.from_dict(json.loads((out / "histories.json").read_text()))
    assert result.kind == "explain" and len(result.runs) == 3
    small, mid, large = (r.lr for r in result.runs)
    assert mid is not None and small == pytest.approx(mid / 10) and large == pytest.approx(mid * 10)
    assert all(r.note for r in result.runs)
    assert result.runs[0].note.startswith("too small: the loss falls slowly")
    assert result.runs[1].note.startswith("suggested:")
    assert re.match(r"(oscillates|too large|diverged)", result.runs[2].note)
    for run in result.runs:
        assert run.note in " ".join(res.output.split()) or run.note[:40] in res.output
    rows = _table_rows((out / "table.md").read_text())
    assert len(rows) == 3 and all(
        r.rstrip(" |").endswith(n.replace("|", "\\|"))
        for r, n in zip(rows, [x.note for x in result.runs], strict=True)
    )
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page and result.runs[0].note in page
    assert (out / "curves.png").read_bytes()[:8] == PNG


def test_train_writes_history_and_curves(tmp_path: Path) -> None:
    out = tmp_path / "train"
    res = runner.invoke(
        app,
        ["train", "--task", TASK, "--optimizer", "momentum", "--schedule", "onecycle"]
        + ["--epochs", "2", "--lr", "0.05", "--seed", "1", "-o", str(out)],
    )
    assert res.exit_code == 0, res.output
    h = History.from_dict(json.loads((out / "history.json").read_text()))
    assert (h.optimizer, h.seed, h.status, len(h.epochs)) == ("momentum", 1, "completed", 2)
    assert max(h.lrs) == pytest.approx(0.05, rel=1e-3)
    assert (out / "curves.png").read_bytes()[:8] == PNG
    assert "status: completed" in res.output and f"{h.final_metric:.4g}" in res.output
    # output to a pipe: lines of text are not broken (rich would break them at 80 columns)
    status = next(line for line in res.output.splitlines() if line.startswith("status:"))
    assert len(status) > 80 and status.endswith(" s"), status
    assert f"wrote {out / 'history.json'} and {out / 'curves.png'}" in res.output


def test_train_says_when_a_schedule_does_not_fit_the_run(tmp_path: Path) -> None:
    args = ["train", TASK, "--optimizer", "momentum", "--epochs", "2", "-o", str(tmp_path)]
    res = runner.invoke(app, [*args, "--schedule", "cosine(0.05, steps=20)"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("warning: schedule cosine(0.05, steps=20): [horizon-short] step 20: ")
    assert "UserWarning" not in res.output
    strict = 'horizon(cosine(0.05, steps=20), steps=20, after="error")'
    res = runner.invoke(app, [*args, "--schedule", strict])
    assert res.exit_code == 2 and "ends at step 20 with after='error'" in res.output


def test_train_with_amp_on_the_cpu(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "train",
            "--task",
            TASK,
            "--epochs",
            "2",
            "--lr",
            "0.03",
            "--device",
            "cpu",
            "--amp",
            "-o",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    h = History.from_dict(json.loads((tmp_path / "history.json").read_text()))
    assert h.status == "completed" and h.final_metric > 0.8


def test_train_clips_gradients(tmp_path: Path) -> None:
    """At LR 1000 momentum SGD on the digits diverges unless `--clip-grad-norm` clips it."""
    statuses = []
    for extra in ([], ["--clip-grad-norm", "1"]):
        out = tmp_path / str(len(extra))
        args = [
            "train",
            "--task",
            "logreg-digits",
            "--optimizer",
            "momentum",
            "--epochs",
            "2",
            "--lr",
            "1000",
        ]
        res = runner.invoke(app, [*args, *extra, "-o", str(out)])
        assert res.exit_code == 0, res.output
        statuses.append(History.from_dict(json.loads((out / "history.json").read_text())).status)
    assert statuses == ["diverged", "completed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "--task", "nope"], "unknown task 'nope'"),
        (["compare", "--task", TASK, "--optimizers", "adam", "lbfgsx"], "unknown optimizer 'lbfgsx'"),
        (["compare", "--task", TASK, "--schedules", "cosin(0.1)"], "unknown schedule 'cosin'"),
        (["compare", "--task", TASK, "--schedules", "constant", "cosine(0.1"], "invalid schedule spec"),
        (["compare", "--task", TASK, "--lrs", "abc"], "--lrs"),
        (["compare", "--task", TASK, "--lrs", "-1"], "--lrs"),
        (["compare", "--task", TASK, "--lrs", "0", "1e-3"], "--lrs"),
        (["compare", "--task", TASK, "--lrs", "auto", "1e-3"], "--lrs"),
        (["compare", "--task", TASK, "--seeds", "0"], "--seeds"),
        (["train", "--task", "nope"], "unknown task"),
        (["train", "--task", TASK, "--optimizer", "adamx"], "unknown optimizer 'adamx'"),
        (["train", "--task", TASK, "--schedule", "warmup(10) >>"], "invalid schedule spec"),
        (["train", "--task", TASK, "--lr", "-0.1"], "--lr"),
        (["train", "--task", TASK, "--device", "gpu0"], "--device must name a torch device"),
        (["train", "--task", TASK, "--device", "cuda:99"], "--device 'cuda:99' is not available here"),
        (["train", "--task", TASK, "--device", "meta"], "--device must hold real data"),
        (["train", "--task", TASK, "--clip-grad-norm", "-1"], "--clip-grad-norm must be a finite number > 0"),
        (["explain", "--task", "nope"], "unknown task"),
        (["explain", "--task", TASK, "--optimizer", "adamx"], "unknown optimizer 'adamx'"),
    ],
)
def test_bad_input_exits_2_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_list_options_take_several_values_after_one_flag() -> None:
    args = ["--schedules", "constant", "warmup(5) >> cosine(0.1, steps=10)", "--seeds", "2", "--lrs", "-1"]
    assert spread_values(args) == [
        "--schedules", "constant", "--schedules", "warmup(5) >> cosine(0.1, steps=10)",
        "--seeds", "2", "--lrs", "-1",
    ]  # fmt: skip
    assert spread_values(["--optimizers", "--seeds", "2"]) == ["--optimizers", "--seeds", "2"]
    assert spread_values(["--lrs", "1e-3", "--", "--lrs"]) == ["--lrs", "1e-3", "--", "--lrs"]
    res = runner.invoke(app, ["compare", "--help"])
    assert "--schedules constant onecycle" in " ".join(res.output.replace("│", " ").split())


def test_workers_and_start_methods_give_the_same_histories(tmp_path: Path) -> None:
    kw = {"schedules": ["constant"], "optimizers": ["adam", "sgd"], "seeds": 2, "epochs": 1}
    here = compare(TASK, workers=1, **kw)  # type: ignore[arg-type]
    spawned = compare(TASK, workers=2, start_method="spawn", **kw)  # type: ignore[arg-type]
    assert [r.label for r in here.runs] == [r.label for r in spawned.runs] == [
        "adam, constant, lr=0.001", "sgd, constant, lr=0.01",
    ]  # fmt: skip
    for a, b in zip(here.histories(), spawned.histories(), strict=True):
        assert a.losses == b.losses and a.final_metric == b.final_metric
    fig = plot_training(spawned)
    assert len(fig.axes) == 3
    page = write_report(spawned, tmp_path / "page", "workers")
    assert page.name == "index.html" and "data:image/png;base64," in page.read_text()


def test_library_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'nadamx'"):
        compare(TASK, ["constant"], ["nadamx"])
    with pytest.raises(ValueError, match="`seeds` must be an int >= 1"):
        compare(TASK, ["constant"], ["adam"], seeds=0)
    with pytest.raises(ValueError, match="every LR in `lrs`"):
        compare(TASK, ["constant"], ["adam"], lrs=[1e-3, math.inf])
    with pytest.raises(ValueError, match="`lrs` must be 'auto'"):
        compare(TASK, ["constant"], ["adam"], lrs="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`start_method`"):
        explain(TASK, start_method="thread")


def test_compare_checks_each_schedule_against_the_runs_once() -> None:
    with pytest.warns(UserWarning) as caught:
        result = compare(
            TASK, ["cosine(0.05, steps=20)", "constant"], ["momentum"], seeds=2, epochs=1, workers=1
        )
    said = [str(w.message) for w in caught if ": schedule " in str(w.message)]
    assert (
        len(said) == 1
        and said[0].startswith("compare: schedule cosine")
        and "cosine(0.05, steps=20): [horizon-short] step 20" in said[0]
    ), said
    assert len(result.histories()) == 4
    with pytest.raises(ValueError, match="with after='error', but the run has"):
        compare(TASK, ['horizon(cosine(0.05, steps=20), steps=20, after="error")'], ["momentum"], epochs=1)


def _history(optimizer: str, lr: float, diverged: bool) -> History:
    h = History(task=TASK, optimizer=optimizer, schedule="constant", seed=0)
    h.lrs = [lr] * 6
    if diverged:  # in its first epoch: a loss and an LR for each step, and no epoch (no metric)
        h.losses, h.status = [2.3, 40.0, math.inf], "diverged"
        h.lrs = h.lrs[:3]
        return h
    h.losses = [2.3, 2.0, 1.8, 1.6, 1.5, 1.4]
    for e in range(2):
        h.add_epoch(train_loss=2.0 - e, val_loss=1.9 - e, val_metric=0.5 + e / 10, lr=lr, seconds=0.1)
    return h


def _legend_labels(fig: object) -> list[str]:
    """The labels of every legend of the figure (its own and its panels')."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]  # type: ignore[attr-defined]
    return [t.get_text() for lg in legends if lg is not None for t in lg.get_texts()]


@pytest.mark.parametrize("diverged", [(False, True), (True, True)])
def test_training_curves_name_every_run_in_the_legend_even_one_that_diverged_at_once(
    diverged: tuple[bool, bool],
) -> None:
    runs = [
        Run(f"momentum, constant, lr={lr:g}", "momentum", "constant", lr, [_history("momentum", lr, d)])
        for lr, d in zip((0.05, 1000.0), diverged, strict=True)
    ]
    result = CompareResult(task=TASK, metric="accuracy", mode="max", epochs=2, steps_per_epoch=3, runs=runs)
    labels = _legend_labels(plot_training(result))
    for run in runs:
        assert labels.count(run.label) == 1, labels


def test_an_interrupt_stops_the_worker_processes_at_once() -> None:
    """Ctrl-C (here: raised by the progress callback) cancels the jobs not started and ends the
    workers in the middle of theirs, instead of waiting for every job to finish."""
    import multiprocessing
    import time

    workers: list[int] = []
    interrupted: list[float] = []

    def on_run(done: int, total: int) -> None:
        workers.extend(p.pid for p in multiprocessing.active_children() if p.pid is not None)
        interrupted.append(time.perf_counter())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare("mlp-digits", ["constant", "onecycle"], ["adam", "momentum"], seeds=8, lrs=[0.01],
                epochs=20, workers=2, on_run=on_run)  # fmt: skip
    # the runs in progress and those queued (about 2 s each) are not waited for
    assert workers and time.perf_counter() - interrupted[0] < 1.5

    def running(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] != "Z"  # a zombie has ended
        except OSError:  # gone (FileNotFoundError, or ProcessLookupError while reading)
            return False

    deadline = time.monotonic() + 5  # the last moments of an exit
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(running, workers))


def test_ctrl_c_on_the_command_line_stops_compare_and_its_workers(tmp_path: Path) -> None:
    """The terminal sends Ctrl-C to the whole process group: the workers leave it to the command,
    which stops them, instead of each dropping its job and taking the next one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "lrkit.cli", "compare", "--task", "mlp-digits", "--schedules", "constant",
           "--optimizers", "adam", "momentum", "--lrs", "0.01", "--seeds", "12", "--epochs", "20",
           "--workers", "2", "-o", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(4)  # started, in the middle of the runs (24 runs of about 2 s on two workers)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.perf_counter()
    proc.communicate(timeout=60)
    assert time.perf_counter() - t0 < 5 and proc.returncode != 0
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the session still running: {left}"


@pytest.mark.parametrize(
    ("command", "again"),
    [
        (["train", TASK, "--epochs", "1"], ["--seed", "1"]),
        (["compare", TASK, "--epochs", "1", "--workers", "1"], ["--lrs", "0.05"]),
    ],
)
def test_a_full_disk_leaves_the_earlier_outputs_whole(
    command: list[str], again: list[str], tmp_path: Path
) -> None:
    """The results of an earlier run stay as they were, none truncated and none replaced (the
    files are written together: each to a temporary file, renamed when all are written)."""
    import resource

    out = tmp_path / "out"
    first = runner.invoke(app, [*command, "-o", str(out)])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # files cannot grow past 8 kB (less than curves.png), as on a full disk: Python ignores
    # SIGXFSZ, and a write beyond fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))
    try:
        res = runner.invoke(app, [*command, *again, "-o", str(out)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert res.exit_code == 1, res.output
    assert f"error: cannot write to {out}: [Errno 27] File too large" in res.output
    assert "Traceback" not in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # and no temporary file left


def test_explain_calls_a_finite_loss_that_blew_up_by_its_name() -> None:
    from lrkit.train._explain import interpret

    reference = _history("sgd", 0.1, diverged=False)
    blown = History(task=TASK, optimizer="sgd", schedule="constant", seed=0)
    blown.lrs = [1.0] * 6
    blown.losses = [24.9, 1e3, 3e5, 2e7, 9e7, 4.8e8]
    for loss in (2e5, 4.8e8):
        blown.add_epoch(train_loss=loss, val_loss=loss, val_metric=0.1, lr=1.0, seconds=0.1)
    note = interpret(blown, reference, steps_per_epoch=3)
    assert note.startswith("blew up: the training loss grew from 24.9 to 4.8e+08 without becoming non-finite")
