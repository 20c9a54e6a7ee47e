"""`lint`: the mistakes users make with schedules, found before training starts."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lrkit.schedules._base import Schedule
from lrkit.schedules._compose import (
    Affine,
    Clip,
    Horizon,
    Noise,
    Product,
    Repeat,
    Sequence,
    Warmup,
    WithMomentum,
)
from lrkit.schedules._plateau import Plateau
from lrkit.schedules._recipes import Recipe

#: A relative change at a join above this is reported as a jump.
JUMP_TOLERANCE = 0.05
#: An LR below this fraction of its peak, after the peak, barely trains ...
TINY = 1e-3
#: ... and a schedule that is there for more than this fraction of the run decays too early:
#: a decay meant per epoch run per step (cosine to 0 or one-cycle is there for the last ~2%).
EARLY_FRACTION = 0.5
#: More restarts than this in a run: a period given in epochs (a cycle of 2-10 epochs is usual).
MANY_CYCLES = 100


@dataclass(frozen=True)
class LintWarning:
    """One finding: a short `code`, the `step` it concerns (or None) and a `message`."""

    code: str
    message: str
    step: int | None = None

    def __str__(self) -> str:
        where = f"step {self.step}: " if self.step is not None else ""
        return f"[{self.code}] {where}{self.message}"


def _joins(s: Schedule, offset: float = 0.0, end: float = math.inf) -> Iterator[tuple[float, Sequence, int]]:
    """Every join of every sequence in `s` that runs on the same clock as `s` and is reached.

    Yields (absolute step of the join, the sequence, index of the part that starts there).
    Joins after `end` are never reached: a `horizon` holds from its `steps` on, and the next part
    of a sequence takes over where a part ends. Sequences inside time-changing nodes (`repeat`,
    recipes) are not visited.
    """
    if isinstance(s, Sequence):
        starts = s.boundaries
        for i in range(1, len(s.parts)):
            if offset + starts[i] <= end:
                yield offset + starts[i], s, i
        for i, part in enumerate(s.parts):
            stop = offset + starts[i + 1] if i + 1 < len(starts) else end
            yield from _joins(part, offset + starts[i], min(end, stop))
    elif isinstance(s, Horizon):
        yield from _joins(s.schedule, offset, min(end, offset + s.steps))
    elif isinstance(s, WithMomentum):
        yield from _joins(s.schedule, offset, end)
    elif isinstance(s, (Affine, Clip, Noise, Product, Plateau)):
        for child in s.children():
            yield from _joins(child, offset, end)


def _repeats(
    s: Schedule, offset: float = 0.0, end: float = math.inf, owner: Schedule | None = None
) -> Iterator[tuple[float, float, Repeat, Schedule]]:
    """Every `repeat` in `s` (recipes such as `sgdr` and `cyclic` included) that runs on the same
    clock as `s`: the absolute step where it starts, the step where it stops running (a horizon
    holds, the next part of a sequence takes over), the repeat, and the node the user wrote (the
    recipe built from it, or the repeat). Repeats inside a repeat's cycle run on the cycle's
    stretched clock and are not visited; neither is a momentum schedule (the LR's cycles are)."""
    if isinstance(s, Repeat):
        yield offset, end, s, owner or s
    elif isinstance(s, Sequence):
        starts = s.boundaries
        for i, part in enumerate(s.parts):
            stop = offset + starts[i + 1] if i + 1 < len(starts) else end
            yield from _repeats(part, offset + starts[i], min(end, stop), owner)
    elif isinstance(s, Horizon):
        yield from _repeats(s.schedule, offset, min(end, offset + s.steps), owner)
    elif isinstance(s, Recipe):
        yield from _repeats(s._tree, offset, end, owner or s)
    elif isinstance(s, WithMomentum):
        yield from _repeats(s.schedule, offset, end, owner)
    elif isinstance(s, (Affine, Clip, Noise, Product, Plateau)):
        for child in s.children():
            yield from _repeats(child, offset, end, owner)


def _decays_early(values: np.ndarray, steps: int, dur: float | None) -> Iterator[LintWarning]:
    """`decays-early`: after its peak, the LR is below `TINY` of it for most of the run.

    Only the schedule's own course counts: the steps past a length shorter than the run hold
    its last value, which `horizon-short` reports."""
    course = values[: steps if dur is None else min(steps, math.ceil(dur))]
    peak_at = int(np.argmax(course))
    peak = float(course[peak_at])
    tiny = course[peak_at:] < TINY * peak
    if not (peak > 0 and tiny.sum() > EARLY_FRACTION * steps):
        return
    yield LintWarning(
        "decays-early",
        f"the LR falls below {TINY:g} of its peak ({peak:.4g}) here and is below it for "
        f"{100 * tiny.sum() / steps:.0f}% of the run's {steps} steps, where training barely moves: "
        f"is a length or a decay rate meant per epoch used per step? lengths are optimizer steps: "
        f"multiply epochs by the steps per epoch (a decay per epoch: every=<steps per epoch>)",
        peak_at + int(np.argmax(tiny)),
    )


def _many_cycles(schedule: Schedule, steps: int) -> Iterator[LintWarning]:
    """`many-cycles`: a repeat (`sgdr`, `cyclic`, ...) restarts more than `MANY_CYCLES` times."""
    for start, stop, rep, shown in _repeats(schedule):
        last = min(float(steps - 1), stop - 1.0) - start  # its local time at its last trained step
        if last < 0:
            continue
        cycle, _ = rep._locate(np.array([last]))
        restarts = int(cycle[0])
        if restarts > MANY_CYCLES:
            yield LintWarning(
                "many-cycles",
                f"the schedule restarts {restarts} times in {steps} steps (a cycle of {rep.period:g} "
                f"steps in {shown}): is its period given in epochs? lengths are optimizer steps: "
                f"multiply it by the steps per epoch",
                math.ceil(start + rep.period),
            )


def lint(schedule: Schedule, steps: int) -> list[LintWarning]:
    """Check `schedule` for a training run of `steps` optimizer steps.

    Finds: a jump at a join of a sequence (a warmup that does not meet the next part, a decay
    that ends far from where the next part starts), an LR of 0 at step 0 (a wasted step), a
    horizon shorter than the training (the LR holds a final value, or raises, for the rest), a
    schedule much longer than the training (it never finishes its decay), non-finite or negative
    values, steps past an ``after="error"`` horizon, and the epoch-for-step mix-ups of schedules
    without an end: a decay that leaves the LR below 1e-3 of its peak for more than half of the
    run (`decays-early`), and a cycle that restarts more than 100 times (`many-cycles`). A
    schedule that cannot be evaluated on its own (a warmup at the end of a sequence) raises the
    `ScheduleError` of `check_complete`.

    >>> [w.code for w in lint(cosine(0.1, steps=50), steps=100)]
    ['horizon-short']
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"lint: `steps` must be an integer >= 1, got steps={steps!r}")
    steps = int(steps)
    schedule.check_complete()
    out: list[LintWarning] = []
    t = np.arange(steps + 1, dtype=np.float64)
    values = schedule.evaluate(t)
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        out.append(LintWarning("non-finite", f"the LR is {values[bad]} here", bad))
    elif np.any(values < 0):
        bad = int(np.flatnonzero(values < 0)[0])
        out.append(LintWarning("negative", f"the LR is negative ({values[bad]:.3g})", bad))
    if values[0] == 0.0:
        out.append(
            LintWarning(
                "zero-at-start",
                "the LR is 0 at step 0, so the first optimizer step does nothing; start a warmup "
                "above 0 (warmup(n) does by default)",
                0,
            )
        )
    for at, seq, i in _joins(schedule):
        before = seq.parts[i - 1]
        if at >= steps or isinstance(before, Warmup):
            continue  # a warmup meets the next part by construction
        end = float(before.evaluate(np.array([float(before.duration or 0.0)]))[0])
        start = float(seq.evaluate(np.array([seq.boundaries[i]]))[0])
        scale = max(abs(end), abs(start))
        if scale > 0 and abs(end - start) / scale > JUMP_TOLERANCE:
            out.append(
                LintWarning(
                    "jump",
                    f"the LR jumps from {end:.4g} to {start:.4g} where {seq.parts[i]} begins "
                    f"(after {before})",
                    int(at),
                )
            )
    lim = schedule.limit
    dur = schedule.duration
    if lim is not None and lim <= steps:
        out.append(
            LintWarning(
                "past-end",
                f"the schedule ends at step {int(lim) - 1} with after='error', but training runs "
                f"{steps} steps: the run will stop with HorizonError",
                int(lim),
            )
        )
    elif dur is not None and dur < steps:
        held = float(schedule.evaluate(np.array([dur]))[0])
        out.append(
            LintWarning(
                "horizon-short",
                f"the schedule ends at step {dur:g} but training runs {steps} steps: the last "
                f"{steps - dur:g} steps hold the LR at {held:.4g} (is a length given in epochs? lengths "
                f"are optimizer steps: multiply epochs by the steps per epoch)",
                int(np.ceil(dur)),
            )
        )
    elif dur is not None and dur > 1.5 * steps:
        out.append(
            LintWarning(
                "horizon-long",
                f"the schedule lasts {dur:g} steps but training runs {steps}: it stops at "
                f"{100 * steps / dur:.0f}% of its course (does a length count micro-batches of gradient "
                f"accumulation, or samples, instead of optimizer steps?)",
            )
        )
    if np.all(np.isfinite(values)) and not np.any(values < 0):
        out.extend(_decays_early(values, steps, dur))
    out.extend(_many_cycles(schedule, steps))
    return out
