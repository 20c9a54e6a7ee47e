"""PyTorch binding: `ScheduleLR`, a drop-in `torch.optim.lr_scheduler` scheduler for any lrkit
schedule.

Usage is torch's: call ``scheduler.step()`` after ``optimizer.step()``. What differs:

- The position in the schedule is the number of optimizer steps actually *applied*, counted by
  a hook on the optimizer. A step that `GradScaler` skips (inf/NaN gradients) or a micro-batch
  of gradient accumulation that does not call ``optimizer.step()`` does not advance the
  schedule, however often ``scheduler.step()`` is called.
- Every LR is computed in closed form from that count, so a run saved at any step and resumed
  into fresh objects continues with bit-identical LRs (and momenta).
- Param groups: each group's LR is ``scale * schedule(step)``. A group's scale is ``scales[i]``
  if given, else its own ``"lr_scale"`` key if it has one, else its base LR divided by the
  optimizer's default LR (so groups built with their own LR keep their ratio); the base LR is
  torch's ``"initial_lr"`` where a torch scheduler set one, else the group's LR. The scale is
  written into the group as ``"lr_scale"``, so a later scheduler on the same optimizer (a second
  phase), or one attached to an optimizer loaded from a checkpoint, scales the group the same
  way instead of reading an LR an earlier schedule has moved. Groups added later with
  ``optimizer.add_param_group`` are scheduled from the next ``step()``.
- ``step()`` writes every group's LR. An LR changed by something else in between (torch's
  ``ReduceLROnPlateau``, a second scheduler on the optimizer) is overwritten, and a warning says
  so once: compose the schedules into one instead (``warmup(500) >> plateau(...)`` with
  ``report``). A call of ``step()`` that advances half the schedule's length or more at once
  (``step()`` called once per epoch over a schedule written in epochs) warns that lengths are
  counted in optimizer steps (``count="calls"`` counts calls instead).
- Schedules that cycle momentum (one-cycle, ``with_momentum``) write ``momentum``, or ``betas[0]``
  for Adam-style optimizers.
- A tensor LR (``torch.optim.Adam(params, lr=torch.tensor(1e-3))``) is updated in place, so a
  ``torch.compile``d optimizer step is not recompiled when the LR changes. Groups that share one
  tensor (torch gives every group without an LR of its own the optimizer's default object) get
  a copy each, so that each can take its own LR, and the default stays the LR it was built with.
- The constructor only writes the step-0 LR (and each group's ``"lr_scale"``); it does not step
  or wrap the optimizer.
- Reduce-on-plateau composes: report a metric with ``scheduler.report(val_loss)``.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.hooks import RemovableHandle

from lrkit.schedules import HorizonError, Schedule, ScheduleError, from_config, parse

__all__ = ["ScheduleLR", "STATE_FORMAT"]

#: Identifies the layout of `ScheduleLR.state_dict()`.
STATE_FORMAT = "lrkit.ScheduleLR/1"

#: LRs are evaluated in aligned blocks of this many steps and cached; alignment makes every
#: value independent of where a run started or resumed.
BLOCK = 1024


def _as_schedule(schedule: Any) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str):
        return parse(schedule)
    if isinstance(schedule, Mapping):
        return from_config(schedule)
    raise TypeError(
        f"ScheduleLR: `schedule` must be an lrkit Schedule, a spec string or a config dict, "
        f"got {type(schedule).__name__}"
    )


def _write(group: dict[str, Any], key: str, value: float) -> None:
    old = group[key]
    if isinstance(old, torch.Tensor):
        old.fill_(value)
    else:
        group[key] = value


def _read(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _scale_value(value: Any, what: str, where: str = "ScheduleLR") -> float:
    """A param group's LR scale: a finite number >= 0."""
    number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not (0 <= number < math.inf):
        raise ValueError(f"{where}: {what} must be a finite number >= 0, got {value!r}")
    return float(number)


def _scale_list(values: Any, name: str, where: str = "ScheduleLR") -> list[float]:
    """`values` as a list of scales (`_scale_value`), each named ``name[i]`` in errors."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise ValueError(f"{where}: `{name}` must be a list of numbers, one per param group, got {values!r}")
    return [_scale_value(v, f"{name}[{i}]", where) for i, v in enumerate(values)]


class ScheduleLR(LRScheduler):
    """Drive an optimizer's learning rates (and momentum) with an lrkit schedule.

    Args:
        optimizer: the torch optimizer.
        schedule: an lrkit `Schedule`, a spec string (``"warmup(100) >> cosine(3e-3, steps=900)"``)
            or a config dict.
        scales: optional per-group LR multipliers (a list, one per param group at construction).
        count: ``"optimizer"`` (default): the schedule advances by applied optimizer steps;
            ``"calls"``: by calls to `step` (torch's behaviour, for loops that never call
            ``optimizer.step()`` directly).

    Example::

        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = ScheduleLR(opt, "warmup(100) >> cosine(0.1, steps=900)")
        for x, y in batches:
            loss_fn(model(x), y).backward()
            opt.step(); opt.zero_grad()
            sched.step()
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Schedule | str | Mapping[str, Any],
        *,
        scales: Sequence[float] | None = None,
        count: Literal["optimizer", "calls"] = "optimizer",
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"ScheduleLR: `optimizer` must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if count not in ("optimizer", "calls"):
            raise ValueError(f"ScheduleLR: `count` must be 'optimizer' or 'calls', got count={count!r}")
        self.optimizer = optimizer
        self.schedule = _as_schedule(schedule)
        self.schedule.check_complete()
        self.count = count
        self._explicit_scales = None if scales is None else _scale_list(scales, "scales")
        if self._explicit_scales is not None and len(self._explicit_scales) != len(optimizer.param_groups):
            raise ValueError(
                f"ScheduleLR: `scales` needs one value per param group "
                f"({len(optimizer.param_groups)}), got {len(self._explicit_scales)}"
            )
        self._scales: list[float] = []
        self._momentum_keys: list[str | None] = []
        self._step = 0
        self._applied = 0
        self._block = -1
        self._lr_block: list[float] = []
        self._mom_block: list[float] | None = None
        self._limit = self.schedule.limit
        self._last_lr: list[float | torch.Tensor] = []
        self.base_lrs = [_read(g["lr"]) for g in optimizer.param_groups]
        default = optimizer.defaults.get("lr")
        # the LR a group added later is compared with, to find its scale
        self._default_lr = None if default is None else _read(default)
        self._sync_groups()
        self._hook: RemovableHandle | None = self._count_steps()
        self._warned_outside = False
        self._warned_jump = False
        self._apply(0)

    def _count_steps(self) -> RemovableHandle:
        """Count the optimizer's applied steps with a hook on its ``step``."""
        ref = weakref.ref(self)

        def _count_applied(opt: Optimizer, args: Any, kwargs: Any) -> None:
            me = ref()
            if me is not None:
                me._applied += 1

        return self.optimizer.register_step_post_hook(_count_applied)

    # a copy (copy.deepcopy, pickle, torch.save) counts the steps of its own optimizer: torch
    # drops an optimizer's hooks when it is copied, and a hook is a closure that cannot be pickled
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_hook"] = self._hook is not None  # counting, unless closed
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        counting = state.pop("_hook")
        self.__dict__.update(state)
        self._hook = self._count_steps() if counting else None

    # -- torch's scheduler API ------------------------------------------------------------------
    @property
    def last_epoch(self) -> int:
        """The current position in the schedule (torch's name for it)."""
        return self._step

    @last_epoch.setter
    def last_epoch(self, value: int) -> None:
        raise AttributeError(
            "ScheduleLR.last_epoch is read-only: it counts the optimizer steps taken. To resume, use "
            "load_state_dict; to run schedules one after another, compose them in one ScheduleLR "
            "(ScheduleLR(opt, 'warmup(500) >> cosine(0.1, steps=9500)')) instead of torch's SequentialLR"
        )

    def step(self, epoch: None = None) -> None:  # type: ignore[override]
        """Advance to the number of applied optimizer steps and write the LRs for the next step."""
        if epoch is not None:
            raise TypeError(
                "ScheduleLR.step() takes no epoch: the position is the count of applied "
                "optimizer steps; to resume, use load_state_dict"
            )
        if self.count == "calls":
            self._applied = self._step + 1
        self._check_outside_writes()
        self._check_jump(self._applied - self._step)
        self._apply(self._applied)

    def _check_outside_writes(self) -> None:
        """Warn (once) when a group's LR is not what this scheduler wrote at its last step."""
        if self._warned_outside:
            return
        for i, (g, last) in enumerate(zip(self.optimizer.param_groups, self._last_lr, strict=False)):
            now = g["lr"]
            if isinstance(now, torch.Tensor) and isinstance(last, torch.Tensor):
                same = torch.equal(now, last)
            else:
                same = not isinstance(now, torch.Tensor) and now == last
            if not same:
                self._warned_outside = True
                warnings.warn(
                    f"ScheduleLR: param group {i}'s LR was changed outside this scheduler (to "
                    f"{_read(now):.4g}, after it wrote {_read(last):.4g}) and is overwritten at every "
                    "step(); another scheduler on this optimizer (torch's ReduceLROnPlateau, a second "
                    "ScheduleLR) fights this one: compose them into one schedule instead, e.g. "
                    "'warmup(500) >> plateau(1e-3, factor=0.5, patience=3)' with report(val_loss)",
                    stacklevel=3,
                )
                return

    def _check_jump(self, advance: int) -> None:
        """Warn (once) when one call of `step` covers half the schedule's length or more."""
        length = self.schedule.duration
        if self._warned_jump or advance <= 1 or length is None or self._step >= length:
            return
        if advance >= length / 2:
            self._warned_jump = True
            warnings.warn(
                f"ScheduleLR: one call of step() advanced {advance} optimizer steps, "
                f"{advance / length:.0%} of {self.schedule} ({length:g} steps long): its lengths are "
                "counted in optimizer steps, not in calls of step() (epochs); write them in optimizer "
                "steps (epochs x steps per epoch), or pass count='calls' to count calls",
                stacklevel=3,
            )

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """The LRs the schedule prescribes at the current step, one per param group."""
        lr = self._lr_at(self._step)
        return [s * lr for s in self._scales]

    def get_last_lr(self) -> list[float | torch.Tensor]:
        """The LRs written at the last `step` (tensor copies for tensor LRs)."""
        return list(self._last_lr)

    def report(self, metric: float) -> bool:
        """Report a validation metric to the schedule's `plateau` nodes.

        Call it once per evaluation (typically per epoch). Returns True when it reduced the LR,
        which takes effect from the next optimizer step.
        """
        if not self.schedule.has_plateau:
            raise ValueError(
                f"ScheduleLR.report: the schedule {self.schedule} has no plateau node; "
                f"compose one, e.g. warmup(100) >> plateau(1e-3, factor=0.5, patience=3)"
            )
        value = _read(metric) if isinstance(metric, torch.Tensor) else metric
        before = self._lr_at(self._step)
        self.schedule = self.schedule.observe(float(self._step), value)
        self._schedule_changed()
        self._apply(self._step)
        return self._lr_at(self._step) != before

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data: the schedule's config (including plateau state), the step, the scales."""
        return {
            "format": STATE_FORMAT,
            "schedule": self.schedule.to_config(),
            "step": self._step,
            "scales": list(self._scales),
            "count": self.count,
        }

    def load_state_dict(
        self, state_dict: Mapping[str, Any], *, schedule: Literal["check", "saved", "current"] = "check"
    ) -> None:
        """Resume from `state_dict` and write the LRs of the saved step.

        Args:
            state_dict: from `state_dict`.
            schedule: what to do when the saved schedule differs from the one this object was
                built with (for instance a different total length): ``"check"`` raises (a changed
                schedule silently shifts the position in it), ``"saved"`` continues the saved
                schedule, ``"current"`` continues the new one at the saved step. With
                ``"current"``, a schedule that differs from the saved one is used as it was built:
                its `plateau` nodes start afresh (the saved best metric, count of bad evaluations,
                cooldown and reductions are not carried over, so reductions made before the
                checkpoint are undone); when the two differ only in plateau state, the saved state
                is kept.
        """
        if not isinstance(state_dict, Mapping) or state_dict.get("format") != STATE_FORMAT:
            got = state_dict.get("format") if isinstance(state_dict, Mapping) else type(state_dict).__name__
            raise ValueError(
                f"ScheduleLR.load_state_dict: expected a state dict of format {STATE_FORMAT!r}, got {got!r}"
            )
        step = state_dict.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"ScheduleLR.load_state_dict: `step` must be an int >= 0, got {step!r}")
        try:
            saved = from_config(state_dict["schedule"])
        except (KeyError, ScheduleError) as e:
            raise ValueError(f"ScheduleLR.load_state_dict: bad `schedule`: {e}") from None
        if schedule not in ("check", "saved", "current"):
            raise ValueError(
                f"ScheduleLR.load_state_dict: `schedule` must be 'check', 'saved' or 'current', "
                f"got {schedule!r}"
            )
        if schedule == "check" and saved.fresh() != self.schedule.fresh():
            raise ValueError(
                "ScheduleLR.load_state_dict: the checkpoint was saved with the schedule\n"
                f"  {saved.fresh()}\nbut this scheduler was built with\n  {self.schedule.fresh()}\n"
                "Resuming would silently shift the position in the schedule. Pass "
                "schedule='saved' to continue the saved one or schedule='current' to switch."
            )
        raw_scales = state_dict.get("scales", [])
        if not isinstance(raw_scales, list):
            raise ValueError(
                f"ScheduleLR.load_state_dict: `scales` must be a list of numbers, got {raw_scales!r}"
            )
        scales = _scale_list(raw_scales, "scales", "ScheduleLR.load_state_dict")
        count = state_dict.get("count", self.count)
        if count not in ("optimizer", "calls"):
            raise ValueError(
                f"ScheduleLR.load_state_dict: `count` must be 'optimizer' or 'calls', got {count!r}"
            )
        # everything is validated: only now change this object
        if schedule != "current" or (saved.has_plateau and saved.fresh() == self.schedule.fresh()):
            self.schedule = saved
        self.count = count
        self._sync_groups()
        # the saved groups take their saved scales; groups the checkpoint does not have keep theirs
        n = min(len(scales), len(self._scales))
        self._scales[:n] = scales[:n]
        for g, scale in zip(self.optimizer.param_groups, self._scales, strict=False):
            g["lr_scale"] = scale
        self._schedule_changed()
        self._step = step
        self._applied = step
        self._apply(step)

    def close(self) -> None:
        """Stop counting this optimizer's steps (remove the hook on ``optimizer.step``)."""
        hook = getattr(self, "_hook", None)
        if hook is not None:
            hook.remove()
            self._hook = None

    def __del__(self) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------
    def _sync_groups(self) -> None:
        """Give every param group a scale and a momentum key (groups may be added later)."""
        groups = self.optimizer.param_groups
        defaults = self.optimizer.defaults
        default_lr = self._default_lr
        needs_momentum = self.schedule.has_momentum
        for i in range(len(self._scales), len(groups)):
            g = groups[i]
            lr_value = g["lr"]
            base = g.get("initial_lr", lr_value)  # where a torch scheduler has moved the LR
            if self._explicit_scales is not None and i < len(self._explicit_scales):
                scale = self._explicit_scales[i]
            elif "lr_scale" in g:
                scale = _scale_value(g["lr_scale"], f"param group {i}'s 'lr_scale'")
            elif base is defaults.get("lr") or (default_lr is not None and _read(base) == default_lr):
                scale = 1.0
            elif default_lr:
                scale = _read(base) / default_lr
            else:
                raise ValueError(
                    f"ScheduleLR: param group {i} has lr={_read(base)} but the optimizer's default "
                    f"lr is {defaults.get('lr')}; give the group an 'lr_scale' or pass scales="
                )
            self._scales.append(scale)
            g["lr_scale"] = scale  # for a later scheduler on this optimizer (see the module's notes)
            # torch gives every group without an LR of its own the optimizer's default object: a
            # tensor LR shared with another group would take that group's LR too
            if isinstance(lr_value, torch.Tensor) and any(lr_value is h["lr"] for h in groups[:i]):
                g["lr"] = lr_value.detach().clone()
            key: str | None = None
            if "betas" in g:
                key = "betas"
            elif "momentum" in g:
                key = "momentum"
            elif needs_momentum:
                raise ValueError(
                    f"ScheduleLR: the schedule {self.schedule} cycles momentum, but param group {i} "
                    f"of {type(self.optimizer).__name__} has neither 'momentum' nor 'betas'; "
                    f"use a schedule without momentum (e.g. onecycle(..., momentum_range=none))"
                )
            self._momentum_keys.append(key)
        default = defaults.get("lr")
        if isinstance(default, torch.Tensor) and any(default is g["lr"] for g in groups):
            # the LRs written into the groups stay out of the default a group added later takes
            defaults["lr"] = default.detach().clone()

    def _schedule_changed(self) -> None:
        self._block = -1
        self._limit = self.schedule.limit

    def _fill(self, block: int) -> None:
        t = np.arange(block * BLOCK, (block + 1) * BLOCK, dtype=np.float64)
        lr = self.schedule.evaluate(t)
        mom = self.schedule.evaluate_momentum(t)
        self._lr_block = lr.tolist()
        self._mom_block = None if mom is None else mom.tolist()
        self._block = block

    def _lr_at(self, step: int) -> float:
        if step // BLOCK != self._block:
            self._fill(step // BLOCK)
        return self._lr_block[step % BLOCK]

    def _apply(self, step: int) -> None:
        if self._limit is not None and step >= self._limit:
            raise HorizonError(
                f"ScheduleLR: step {step} is past the end of {self.schedule} (it ends at step "
                f"{int(self._limit) - 1} with after='error'); the run is longer than the schedule"
            )
        groups = self.optimizer.param_groups
        if len(groups) > len(self._scales):
            self._sync_groups()
        lr = self._lr_at(step)
        if not (lr >= 0.0 and lr != math.inf):  # also catches NaN
            raise ValueError(f"ScheduleLR: {self.schedule} gives lr={lr} at step {step}")
        self._step = step
        mom = self._mom_block[step % BLOCK] if self._mom_block is not None else math.nan
        last: list[float | torch.Tensor] = []
        set_momentum = self._mom_block is not None and mom == mom  # not NaN
        for g, scale, key in zip(groups, self._scales, self._momentum_keys, strict=True):
            value = scale * lr
            old = g["lr"]
            if isinstance(old, torch.Tensor):
                old.fill_(value)
                last.append(old.detach().clone())
            else:
                g["lr"] = value
                last.append(value)
            if set_momentum and key is not None:
                if key == "momentum":
                    _write(g, "momentum", mom)
                else:
                    b = g["betas"]
                    if isinstance(b[0], torch.Tensor):
                        b[0].fill_(mom)
                    else:
                        g["betas"] = (mom, *tuple(b)[1:])
        self._last_lr = last
