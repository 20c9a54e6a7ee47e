"""The text form: the issue's examples, error messages that point at the place, and fuzzing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrkit.schedules import (
    Schedule,
    SpecError,
    cosine,
    cyclic,
    multistep,
    onecycle,
    parse,
    plateau,
    sgdr,
    spec_names,
    step,
    warmup,
)

EXAMPLES = {
    "constant(0.1)": lambda t: np.full(t.shape, 0.1),
    "step(0.1, every=30, factor=0.1)": lambda t: 0.1 * 0.1 ** (t // 30),
    "multistep(0.1, milestones=[30, 80], factor=0.1)": lambda t: (
        0.1 * 0.1 ** ((t >= 30).astype(int) + (t >= 80).astype(int))
    ),
    "exponential(0.1, factor=0.95)": lambda t: 0.1 * 0.95**t,
    "polynomial(0.1, steps=100, power=2, end=0)": lambda t: 0.1 * (1 - np.minimum(t, 100) / 100) ** 2,
    "cosine(0.1, steps=100, end=0.001)": lambda t: (
        0.001 + 0.099 * (1 + np.cos(np.pi * np.minimum(t, 100) / 100)) / 2
    ),
    "wsd(0.1, warmup=10, stable=70, decay=20, end=0)": lambda t: np.where(
        t < 10, 0.1 * (t + 1) / 11, np.where(t < 80, 0.1, 0.1 * (1 - np.minimum(t - 80, 20) / 20))
    ),
    "inverse_sqrt(0.1, warmup=10)": lambda t: np.where(
        t < 10, 0.1 * (t + 1) / 11, 0.1 * np.sqrt(10 / np.maximum(t, 1))
    ),
    "warmup(10) >> cosine(0.1, steps=90)": lambda t: np.where(
        t < 10, 0.1 * (t + 1) / 11, 0.05 * (1 + np.cos(np.pi * np.minimum(t - 10, 90) / 90))
    ),
    "0.5 * cosine(0.1, steps=100)": lambda t: 0.025 * (1 + np.cos(np.pi * np.minimum(t, 100) / 100)),
    "plateau(0.1, factor=0.5, patience=3)": lambda t: np.full(t.shape, 0.1),
}


@pytest.mark.parametrize("spec", list(EXAMPLES))
def test_examples_mean_what_they_say(spec: str) -> None:
    t = np.arange(300)
    np.testing.assert_allclose(parse(spec)(t), EXAMPLES[spec](t.astype(float)), rtol=1e-12, atol=1e-15)


def test_examples_build_the_expected_objects() -> None:
    assert parse("step(0.1, every=30, factor=0.1)") == step(0.1, every=30, factor=0.1)
    assert parse("multistep(0.1, milestones=[30, 80], factor=0.1)") == multistep(0.1, (30, 80))
    assert parse("sgdr(0.1, period=10, mul=2, end=0)") == sgdr(0.1, period=10, mul=2)
    assert parse('cyclic(0.001, 0.1, half=20, mode="triangular2")') == cyclic(
        0.001, 0.1, half=20, mode="triangular2"
    )
    assert parse("onecycle(0.1, steps=100)") == onecycle(0.1, steps=100)
    assert parse("warmup(10) >> cosine(0.1, steps=90)") == warmup(10) >> cosine(0.1, steps=90)
    assert parse("plateau(0.1, factor=0.5, patience=3)") == plateau(0.1, factor=0.5, patience=3)
    assert parse("  cosine(0.1,\n steps=100)  ") == cosine(0.1, steps=100)
    assert parse("cosine(0.1, steps=100) + 1e-5") == cosine(0.1, steps=100) + 1e-5
    assert parse("2 * 0.25 * cosine(0.1, steps=100)") == 0.5 * cosine(0.1, steps=100)
    assert parse("onecycle(0.1, steps=100, momentum_range=none)").has_momentum is False


@pytest.mark.parametrize(
    ("spec", "fragment", "position"),
    [
        ("cosin(0.1, steps=10)", "did you mean 'cosine'", 0),
        ("warmup(10) >> cosin(0.1)", "unknown schedule 'cosin'", 14),
        ("cosine(0.1, step=10)", "has no argument 'step' (did you mean 'steps'?)", 17),
        ("cosine(0.1)", "cosine needs 'steps'", 0),
        ("cosine(0.1, steps=0)", "`steps` must be >= 1, got steps=0", 0),
        (
            "cosine(0.1, steps=0.3)",
            "whole number of optimizer steps, got steps=0.3; a fraction of training",
            0,
        ),
        (
            "warmup(2.5) >> cosine(0.1, steps=8)",
            "warmup: `steps` must be a whole number of optimizer steps",
            0,
        ),
        ("constant(0.1, steps=10) >> sgdr(0.1, period=0.5)", "sgdr: `period` must be a whole number", 27),
        ("cosine(-0.1, steps=10)", "`lr` must be >= 0, got lr=-0.1", 0),
        ("cosine(0.1, steps=10", "syntax error", None),
        ("warmup(10) >> constant(0.1) >> cosine(0.1, steps=5)", "constant(0.1) has no length", 0),
        ("warmup(10)", "needs a schedule after it", 0),
        ("cosine(0.1, steps=5) >> warmup(10)", "nothing to warm up to", 0),
        ("0.5 * warmup(10) >> cosine(0.1, steps=5)", "must be followed by `>> schedule`", 0),
        ("__import__('os').system('true')", "only plain schedule names", 0),
        ("cosine(0.1, steps=10).lr", "unsupported syntax (Attribute)", 0),
        ("0.1", "got the value 0.1; e.g. constant(0.1)", 0),
        ("cosine(0.1, steps=10) - 0.01", "unsupported operator Sub", 0),
        ("cosine(0.1, steps=10, steps=20)", "given twice", None),
        ("cyclic(0.1, 0.01, half=5)", "`low` must be <= `high`", 0),
        ('cyclic(0.001, 0.1, half=5, mode="triangle")', "`mode` must be one of", 0),
        ("multistep(0.1, milestones=[80, 30])", "strictly increasing", 0),
        ("onecycle(0.1, steps=3)", "empty phase", 0),
        ("", "the spec is empty", 0),
        ("cosine", "cosine needs arguments", 0),
        ("lambda t: 0.1", "unsupported syntax (Lambda)", 0),
    ],
)
def test_errors_point_at_the_place(spec: str, fragment: str, position: int | None) -> None:
    with pytest.raises(SpecError) as info:
        parse(spec)
    assert fragment in str(info.value)
    if position is not None:
        assert info.value.position == position
    assert isinstance(info.value, ValueError)


TOO_LONG = [
    ("sgdr(0.1, period=10, mul=2, cycles=60)", "sgdr: `cycles` must keep the total length < 2**53 steps"),
    ("sgdr(0.1, period=10, mul=2, cycles=5000)", "(inf steps in all)"),  # 2**5000 overflows
    (
        "constant(0.1, steps=9e15) >> constant(0.1, steps=9e15)",
        "sequence: `parts` must keep the total length < 2**53 steps, got 2 parts (18000000000000000 steps",
    ),
    ("repeat(cosine(0.1, steps=10), mul=3, cycles=100)", "repeat: `cycles` must keep the total length"),
    ("wsd(0.1, warmup=5e15, stable=5e15, decay=10)", "wsd: `warmup`, `stable` and `decay` must keep"),
    ("cyclic(0.001, 0.1, half=5e15)", "cyclic: a cycle, `half` + `down` steps, must be < 2**53"),
    ("horizon(constant(0.1), steps=9007199254740992.0)", "horizon: `steps` must be < 2**53"),
]


@pytest.mark.parametrize(("spec", "fragment"), TOO_LONG)
def test_a_schedule_of_2_53_steps_or_more_is_refused(spec: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(spec)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("spec", "fragment"), TOO_LONG[:2])
def test_the_cli_refuses_a_schedule_too_long_without_a_traceback(spec: str, fragment: str) -> None:
    from typer.testing import CliRunner

    from lrkit.cli import app

    result = CliRunner().invoke(app, ["schedule", "show", spec])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a traceback
    assert "invalid schedule spec" in result.stderr and fragment in result.stderr


def test_the_longest_schedules_still_work() -> None:
    s = parse("constant(0.1, steps=4503599627370496) >> cosine(0.1, steps=4503599627370495)")
    assert s.duration == 2**53 - 1 and s(2**53 - 1) == 0.0
    assert parse("sgdr(0.1, period=10, mul=2, cycles=49)")(2**52) >= 0


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(SpecError) as info:
        parse("frobnicate(1)")
    for name in ("cosine", "onecycle", "wsd", "plateau", "warmup"):
        assert name in str(info.value)
    assert "sequence" not in spec_names()  # operators are written as >>, not called


def test_caret_is_under_the_offending_token() -> None:
    with pytest.raises(SpecError) as info:
        parse("warmup(10) >> cosin(0.1)")
    lines = str(info.value).splitlines()
    assert lines[-1].index("^") == lines[-2].index("cosin")


def test_eval_is_never_used() -> None:
    # Would run code if the spec were evaluated as Python.
    for spec in ["[x for x in ().__class__.__bases__]", "(lambda: 1)()", "open('/etc/passwd')"]:
        with pytest.raises(SpecError):
            parse(spec)


NAMES = spec_names()
atoms = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(['"linear"', '"cos"', '"triangular2"', "true", "none", "[30, 80]", "[]", "[0.8, 0.9]"]),
)
keys = st.sampled_from(
    [
        "steps",
        "end",
        "factor",
        "every",
        "period",
        "mul",
        "half",
        "mode",
        "warmup",
        "stable",
        "decay",
        "kind",
        "patience",
        "milestones",
        "cycles",
        "low",
        "high",
        "std",
        "seed",
        "after",
        "power",
        "start",
        "x",
    ]
)


@st.composite
def spec_like(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 2 or draw(st.integers(0, 3)) == 0:
        return draw(atoms)
    kind = draw(st.integers(0, 4))
    if kind <= 2:
        name = draw(st.sampled_from([*NAMES, "cosin", "eval"]))
        args = [draw(spec_like(depth + 1)) for _ in range(draw(st.integers(0, 3)))]
        kws = [f"{draw(keys)}={draw(spec_like(depth + 1))}" for _ in range(draw(st.integers(0, 3)))]
        return f"{name}({', '.join(args + kws)})"
    a, b = draw(spec_like(depth + 1)), draw(spec_like(depth + 1))
    return f"{a} {draw(st.sampled_from(['>>', '*', '+', '-', '/', '**']))} {b}"


def _check(text: str) -> None:
    try:
        s = parse(text)
    except SpecError:
        return
    assert isinstance(s, Schedule)
    assert parse(str(s)) == s
    v = s(np.arange(0, 2000, 7))
    assert v.shape == (286,)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_like())
def test_fuzz_structured_specs(text: str) -> None:
    _check(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=80))
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="cosinewarmup()[]>>*+-.,=0123456789 \"'_\n", max_size=60))
def test_fuzz_spec_alphabet(text: str) -> None:
    _check(text)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 500 + "1" + ")" * 500,
        "-" * 5000 + "1",
        "[" * 300 + "]" * 300,
        "1" * 5000,
        "cosine(" * 200,
        "constant(0.1)" + " >> constant(0.1, steps=1)" * 50,
        "\x00",
        "cosine(1e999, steps=1)",
        "cosine(0.1, steps=" + "9" * 30 + ")",
    ],
)
def test_pathological_inputs_give_spec_errors(text: str) -> None:
    _check(text)
