"""Reference LR finders ("anchors") for the benchmarks: torch-lr-finder and fastai, run in-process.

Both libraries are benchmark-only extras (see ``benchmarks/requirements-bench.txt``); they are imported
inside the functions, so importing this module needs neither, and fastai's import cost (about 2-5 s) and
its side effects (it patches a few methods onto ``torch.Tensor`` and ``pandas.DataFrame`` and adds
warning filters) happen only when `fastai_suggest` or `fastai_rules` is first called.

* `torch_lr_finder_suggest` runs torch-lr-finder's exponential range test with its defaults
  (``smooth_f=0.05``, ``diverge_th=5``) and returns its "steepest gradient" suggestion.
* `fastai_suggest` runs fastai's own ``Learner.lr_find`` on a plain torch model and returns its
  ``minimum``, ``steep``, ``valley`` and ``slide`` suggestions.
* `fastai_rules` applies fastai's four suggestion functions to a given ``(lrs, losses)`` curve, trimmed
  the way ``lr_find`` trims its own curve.

Usage (smoke test)::

    .venv/bin/python benchmarks/_anchors.py
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

#: fastai's suggestion functions, in the order `fastai_suggest` asks ``lr_find`` for them.
FASTAI_RULES = ("minimum", "steep", "valley", "slide")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _save_grads(model: nn.Module) -> list[Tensor | None]:
    return [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]


def _restore_grads(model: nn.Module, grads: list[Tensor | None]) -> None:
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g


def torch_lr_finder_suggest(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Run torch-lr-finder's exponential range test and return its curve and suggestion.

    ``batches`` is a re-iterable of ``(x, y)`` tensor pairs (a list, or an object whose ``__iter__``
    starts over); it is wrapped in torch-lr-finder's own ``TrainDataLoaderIter``, which starts the
    iterable over when it runs out, so no ``DataLoader`` is built. Everything runs on the model's device.

    torch-lr-finder's behaviour, unchanged: step ``k`` (0-based) uses
    ``lr = start_lr * (end_lr / start_lr) ** (k / (num_iter - 1))``, so the last step reaches ``end_lr``;
    the recorded loss is an exponential moving average, ``s_k = 0.05 * loss_k + 0.95 * s_{k-1}``
    (``s_0 = loss_0``, not debiased); the test stops after the step whose smoothed loss exceeds
    ``5 * best`` (that step is recorded). A NaN loss never trips that check, so a NaN run goes on to
    ``num_iter`` steps with NaN losses.

    Returns ``{"lrs", "losses", "steepest", "steps", "diverged"}``: ``lrs``/``losses`` are the recorded
    curve (smoothed losses), ``steps`` the number of optimizer steps run, ``diverged`` whether it stopped
    early, and ``steepest`` torch-lr-finder's own suggestion, the value ``LRFinder.plot(suggest_lr=True)``
    returns (``argmin`` of ``np.gradient`` of the losses, after dropping the first 10 and last 5
    points), taken by drawing into an off-screen matplotlib ``Figure`` (nothing is shown or saved). It is
    None when the curve has fewer than 17 points, where ``plot`` refuses to suggest.

    The model and optimizer are restored afterwards with torch-lr-finder's ``reset()`` (state dicts
    cached in memory before the test); this function also puts back the model's train/eval mode and
    removes the ``step`` wrapper that torch's LR scheduler patches onto the optimizer instance, and puts
    back the parameters' ``.grad`` as they were (``reset()`` leaves the last step's gradients).
    """
    from matplotlib.figure import Figure
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    _seed_all(seed)
    was_training, grads = model.training, _save_grads(model)
    patched = [name for name in ("step", "_opt_called") if name not in vars(optimizer)]
    finder = LRFinder(model, optimizer, loss_fn, memory_cache=True)
    sink = io.StringIO()  # torch-lr-finder prints and draws a tqdm bar; keep the benchmark's output clean
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            finder.range_test(
                TrainDataLoaderIter(batches),
                start_lr=start_lr,
                end_lr=end_lr,
                num_iter=num_iter,
                step_mode="exp",
                smooth_f=0.05,
                diverge_th=5,
            )
            lrs = [float(v) for v in finder.history["lr"]]
            losses = [float(v) for v in finder.history["loss"]]
            steepest: float | None
            try:
                _, suggestion = finder.plot(ax=Figure().add_subplot(), suggest_lr=True)
                steepest = float(suggestion)
            except RuntimeError:  # "Need at least 17 iterations to suggest a learning rate"
                steepest = None
    finally:
        finder.reset()
        model.train(was_training)
        _restore_grads(model, grads)
        for name in patched:
            vars(optimizer).pop(name, None)
    return {
        "lrs": lrs,
        "losses": losses,
        "steepest": steepest,
        "steps": len(lrs),
        "diverged": len(lrs) < num_iter,
    }


def _fastai_rule_funcs() -> dict[str, Callable[..., Any]]:
    from fastai.callback.schedule import minimum, slide, steep, valley

    return {"minimum": minimum, "steep": steep, "valley": valley, "slide": slide}


def fastai_rules(
    lrs: Sequence[float], losses: Sequence[float], *, num_it: int | None = None
) -> dict[str, float | None]:
    """Apply fastai's own suggestion functions (``fastai.callback.schedule``) to a given curve.

    The curve is trimmed as ``Learner.lr_find`` trims its recorded one before suggesting: the first
    ``num_it // 10`` points (``num_it`` defaults to ``len(lrs)``; ``lr_find`` uses its *requested*
    iteration count) and the last 5 are dropped, and the rest is cut at the first NaN loss. Each rule
    then gets the trimmed curve as float32 torch tensors, as in ``lr_find`` (so the values are float32
    LRs); a rule that fails on it (too few
    points: ``slide`` needs 16, ``steep`` 2, ``valley`` and ``minimum`` 1) gives None.

    ``minimum`` is fastai's value, which is already the loss minimum's LR divided by 10; ``steep`` is
    the LR of the steepest descent in ``d loss / d log(lr)``; ``valley`` a point about half-way along
    the longest strictly decreasing subsequence of the losses; ``slide`` fastai's interval-slide rule
    (``lr_diff=15``, ``thresh=0.005``).
    """
    n = len(lrs) if num_it is None else num_it
    lr_t = torch.tensor([float(v) for v in lrs], dtype=torch.float32)[n // 10 : -5]
    loss_t = torch.tensor([float(v) for v in losses], dtype=torch.float32)[n // 10 : -5]
    nan = torch.nonzero(torch.isnan(loss_t)).flatten()
    if len(nan):
        lr_t, loss_t = lr_t[: int(nan[0])], loss_t[: int(nan[0])]
    return {
        name: _finite_or_none(_tolerant(func)(lr_t, loss_t, n)[0])
        for name, func in _fastai_rule_funcs().items()
    }


def _tolerant(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func``, but returning NaN where it raises on a too-short curve (the name is kept for ``lr_find``)."""

    @functools.wraps(func)
    def wrapper(lrs: Tensor, losses: Tensor, num_it: int) -> Any:
        try:
            return func(lrs, losses, num_it)
        except (IndexError, RuntimeError, ValueError):
            return math.nan, (math.nan, math.nan)

    return wrapper


def _finite_or_none(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _fastai_opt_func(optimizer_name: str, fastai_defaults: bool) -> Callable[..., Any]:
    from fastai.optimizer import SGD, Adam

    if optimizer_name == "momentum":
        # fastai's SGD with momentum: grad_avg = mom * grad_avg + grad; p -= lr * grad_avg,
        # the same update as torch.optim.SGD(momentum=0.9, dampening=0).
        return functools.partial(SGD, mom=0.9, wd=0.0)
    if optimizer_name == "adam":
        if fastai_defaults:  # fastai's own Adam: beta2 0.99, eps 1e-5, decoupled weight decay 0.01 (AdamW)
            return functools.partial(Adam, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True)
        # torch.optim.Adam's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay; fastai's
        # debiasing and eps placement (p -= lr/b1 * m / (sqrt(v/b2) + eps)) match torch's.
        return functools.partial(Adam, mom=0.9, sqr_mom=0.999, eps=1e-8, wd=0.0)
    raise ValueError(f"optimizer_name must be 'momentum' or 'adam', not {optimizer_name!r}")


def fastai_suggest(
    model: nn.Module,
    optimizer_name: str,
    loss_fn: LossFn,
    train_batches: Iterable[Batch],
    *,
    lr_min: float = 1e-7,
    lr_max: float = 10,
    num_it: int = 100,
    seed: int = 0,
    fastai_defaults: bool = False,
) -> dict[str, Any]:
    """Run fastai's own ``Learner.lr_find`` on a plain torch model and in-memory batches.

    ``train_batches`` are ``(x, y)`` tensor pairs, served in order (no shuffling) by a fastai
    ``DataLoader`` with ``bs=None`` (pre-batched); ``lr_find`` needs their number for its epoch count,
    so an iterable without ``__len__`` is first made into a list. The ``Learner`` runs on the CPU,
    with a temporary ``path`` for the checkpoint ``lr_find`` saves and reloads, and no progress bar.

    ``optimizer_name``: ``"momentum"`` is fastai's ``SGD(mom=0.9, wd=0)``; ``"adam"`` is fastai's
    ``Adam(mom=0.9, sqr_mom=0.999, eps=1e-8, wd=0)``, i.e. ``torch.optim.Adam``'s defaults, or, with
    ``fastai_defaults=True``, fastai's own ``Adam`` defaults (``sqr_mom=0.99``, ``eps=1e-5``,
    decoupled ``wd=0.01``). The ``Learner`` gets ``wd=0`` unless ``fastai_defaults``.

    fastai's behaviour, unchanged: before batch ``k`` (0-based) it sets
    ``lr = lr_min * (lr_max / lr_min) ** (k / num_it)`` (exponential, per batch; the last of the
    ``num_it`` steps is at ``lr_max * (lr_min / lr_max) ** (1 / num_it)``, not ``lr_max``); momentum
    (and every other hyper-parameter) stays as the optimizer has it, nothing is cycled; the recorded
    loss is the debiased exponential moving average (``beta=0.98``) of the batch losses; it stops
    after ``num_it`` batches, or after the batch whose smoothed loss exceeds 4x the best smoothed loss
    so far (that batch is recorded); a NaN loss does not trip that check, but the suggestions only see
    the curve up to the first NaN. Suggestions are computed on the curve without its first
    ``num_it // 10`` and last 5 points. The model (and fastai's optimizer) are reloaded from the
    checkpoint afterwards; the model's train/eval mode and its parameters' ``.grad`` are put back too.
    fastai zeroes gradients after each step rather than before, so the model's ``.grad`` are set to
    None before the run (otherwise gradients left over from an earlier run would join the first step).

    Returns ``{"lrs", "losses", "minimum", "steep", "valley", "slide", "steps", "diverged"}``, where
    ``lrs``/``losses`` are the full recorded curve, ``steps`` its length, and ``minimum`` is fastai's
    ``minimum`` suggestion, which is *already divided by 10* (the LR of the minimum loss over 10). When
    the curve is too short for one of fastai's rules (where ``lr_find`` itself would raise), that value
    is None (fastai's rule is called by ``lr_find`` as usual, through a wrapper that turns its exception
    into NaN, so that one short curve does not lose the others).
    """
    from fastai.callback.schedule import minimum, slide, steep, valley
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner

    data = train_batches if isinstance(train_batches, Sequence) else list(train_batches)
    _seed_all(seed)
    was_training, grads = model.training, _save_grads(model)
    # fastai zeroes the gradients *after* each step, so a stale .grad would leak into its first step.
    model.zero_grad(set_to_none=True)
    loader = DataLoader(data, bs=None, shuffle=False, device="cpu")
    dls = DataLoaders(loader, loader, device="cpu")
    with tempfile.TemporaryDirectory(prefix="fastai-lr-find-") as path:
        learn = Learner(
            dls,
            model,
            loss_func=loss_fn,
            opt_func=_fastai_opt_func(optimizer_name, fastai_defaults),
            path=path,
            wd=None if fastai_defaults else 0.0,
        )
        try:
            with learn.no_bar():
                suggested = learn.lr_find(
                    start_lr=lr_min,
                    end_lr=lr_max,
                    num_it=num_it,
                    stop_div=True,
                    show_plot=False,
                    suggest_funcs=tuple(_tolerant(f) for f in (minimum, steep, valley, slide)),
                )
        finally:
            model.train(was_training)
            _restore_grads(model, grads)
        values = {k: _finite_or_none(v) for k, v in suggested._asdict().items()}
        lrs = [float(v) for v in learn.recorder.lrs]
        losses = [float(v) for v in learn.recorder.losses]
    return {
        "lrs": lrs,
        "losses": losses,
        **{name: values[name] for name in FASTAI_RULES},
        "steps": len(lrs),
        "diverged": len(lrs) < max(num_it, 6),
    }


def _tiny_problem(seed: int = 0) -> tuple[Callable[[], nn.Module], list[Batch]]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 10, generator=gen)
    y = x @ torch.randn(10, 1, generator=gen) + 0.1 * torch.randn(512, 1, generator=gen)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]

    def make_model() -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))

    return make_model, batches


def _fmt(v: float | None) -> str:
    return "None" if v is None else f"{v:.3g}"


def _torch_optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "momentum":
        return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    return torch.optim.Adam(model.parameters(), lr=1e-3)


def _same_state(model: nn.Module, before: dict[str, Tensor]) -> bool:
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _main() -> None:
    make_model, batches = _tiny_problem()
    loss_fn = nn.MSELoss()
    t0 = time.perf_counter()
    import fastai.callback.schedule  # noqa: F401  (imported once, outside the timings)
    import torch_lr_finder  # noqa: F401

    print(f"imports: {time.perf_counter() - t0:.2f} s (torch threads: {torch.get_num_threads()})")
    # One untimed call of each first: the first call pays one-off costs (matplotlib, fastai's lazy setup).
    model = make_model()
    torch_lr_finder_suggest(model, _torch_optimizer("momentum", model), loss_fn, batches, num_iter=20)
    fastai_suggest(make_model(), "momentum", loss_fn, batches, num_it=20)

    for end_lr in (10.0, 1e-2):  # the second range does not diverge: a full 100 steps
        for name in ("momentum", "adam"):
            model = make_model()
            before = {k: v.clone() for k, v in model.state_dict().items()}
            t = time.perf_counter()
            tlf = torch_lr_finder_suggest(
                model, _torch_optimizer(name, model), loss_fn, batches, end_lr=end_lr
            )
            dt_tlf = time.perf_counter() - t
            assert _same_state(model, before), "torch-lr-finder did not restore the model"
            t = time.perf_counter()
            fa = fastai_suggest(model, name, loss_fn, batches, lr_max=end_lr)
            dt_fa = time.perf_counter() - t
            assert _same_state(model, before), "fastai did not restore the model"
            print(
                f"[{name:8s} 1e-7..{end_lr:g}] torch-lr-finder: {tlf['steps']:3d} steps {dt_tlf:6.3f} s "
                f"steepest={_fmt(tlf['steepest'])}"
            )
            print(
                f"{'':25s}fastai:          {fa['steps']:3d} steps {dt_fa:6.3f} s "
                + " ".join(f"{k}={_fmt(fa[k])}" for k in FASTAI_RULES)
            )
            rules = fastai_rules(tlf["lrs"], tlf["losses"], num_it=100)
            print(
                f"{'':25s}fastai rules on the torch-lr-finder curve: "
                + " ".join(f"{k}={_fmt(v)}" for k, v in rules.items())
            )


if __name__ == "__main__":
    _main()
