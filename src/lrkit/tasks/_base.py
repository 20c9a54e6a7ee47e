"""The `Task` interface, the minibatch loader, the registry of built-in tasks, and `load`.

A task is a small learning problem: a fixed train/val/test split, a model factory, a loss and a
score. The LR finder, the command line, the tests and the benchmarks work on any `Task`, and users
write their own by subclassing it (``lrkit find my_project/exp.py:task``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import math
import sys
import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

try:
    import torch
    from torch import Tensor
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("lrkit.tasks needs PyTorch: pip install 'lrkit[tasks]'") from e

__all__ = [
    "SPLITS",
    "BatchLoader",
    "Task",
    "TaskData",
    "TaskError",
    "get",
    "load",
    "names",
    "register",
]

#: The names of the three splits, in order.
SPLITS = ("train", "val", "test")

T = TypeVar("T", bound="type[Task]")


class TaskError(ValueError):
    """A task reference that cannot be resolved, an unknown task name, or a task whose `epochs` or
    `batch_size` is not an int >= 1 (a `ValueError`)."""


@dataclass(frozen=True)
class TaskData:
    """The three splits of a task, each ``(x, y)`` on the CPU with one example per row.

    The tensors may be shared between callers of `Task.data`: treat them as read-only.
    """

    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """The split called `name` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"TaskData.split: `name` must be one of {', '.join(SPLITS)}, got {name!r}")
        pair: tuple[Tensor, Tensor] = getattr(self, name)
        return pair


class BatchLoader:
    """Minibatches ``(x, y)`` of a split, by direct tensor indexing.

    Re-iterable: each ``iter()`` is one epoch. With ``shuffle=True`` the order of an epoch is a
    permutation drawn from ``(seed, epoch)``, where `epoch` counts the epochs started so far, so a
    loader gives the same sequence of epochs every time it is built with the same seed. Every
    example appears exactly once per epoch: the ``len(self) = ceil(n / batch_size)`` batches have
    sizes as equal as possible (at most `batch_size`, never a lone leftover example, which matters
    for BatchNorm).

    Args:
        x: inputs, one example per row.
        y: targets, ``len(y) == len(x)``.
        batch_size: the largest batch, >= 1.
        shuffle: reshuffle every epoch (training) or keep the order (evaluation).
        seed: the shuffling seed, >= 0.

    >>> loader = BatchLoader(torch.arange(10.0), torch.arange(10), batch_size=4, shuffle=True)
    >>> len(loader), [len(x) for x, _ in loader]
    (3, [4, 3, 3])
    >>> sorted(int(i) for _, y in loader for i in y)
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool = False, seed: int = 0
    ) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(
                f"BatchLoader: `x` and `y` must be tensors, got {type(x).__name__} and {type(y).__name__}"
            )
        if x.ndim == 0 or len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"BatchLoader: `x` and `y` need the same number of rows (> 0), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BatchLoader: `batch_size` must be an int >= 1, got batch_size={batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"BatchLoader: `seed` must be an int >= 0, got seed={seed!r}")
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = seed
        #: Epochs started so far; the next ``iter()`` uses this as its epoch number.
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.x) / self.batch_size)

    def order(self, epoch: int) -> Tensor:
        """The permutation of the examples used in `epoch` (the identity without shuffling)."""
        n = len(self.x)
        if not self.shuffle:
            return torch.arange(n)
        return torch.from_numpy(np.random.default_rng([self.seed, epoch]).permutation(n))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Start the next epoch and iterate over its batches."""
        epoch = self.epoch
        self.epoch += 1
        if self.shuffle:
            idx = self.order(epoch)
            x, y = self.x[idx], self.y[idx]
        else:
            x, y = self.x, self.y
        k = len(self)
        return zip(torch.tensor_split(x, k), torch.tensor_split(y, k), strict=True)

    def __repr__(self) -> str:
        return (
            f"BatchLoader(n={len(self.x)}, batch_size={self.batch_size}, batches={len(self)}, "
            f"shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch})"
        )


class Task(ABC):
    """A learning problem: data with a fixed split, a model factory, a loss and a score.

    Subclasses set the class attributes and implement `data` and `model`; the defaults of `loss`
    and `score` are cross-entropy and accuracy. When each method is called:

    - `data` whenever a split is needed (by `loader`, and by training code to score the val and
      test splits). It must return the same split every time: draw it with a fixed seed, and
      cache it, since it is called often.
    - `model` once per training run (or finder run), with the run's seed; it returns a fresh
      module whose initial weights depend only on `seed`.
    - `loss` on every training step, on a minibatch's model output and targets; it returns a
      scalar tensor to differentiate.
    - `score` on a whole split after training, with the model in eval mode under
      ``torch.no_grad()``; it returns the task's `metric` as a float.
    - `loader` once per run, for the minibatches.

    Attributes:
        name: the registry name, e.g. ``"mlp-digits"``.
        metric: what `score` returns: ``"accuracy"`` or ``"rel_mse"`` (mean squared error divided
            by the variance of the targets; 1.0 is the score of predicting their mean).
        mode: ``"max"`` when a higher metric is better (accuracy), ``"min"`` when lower is.
        epochs: the epochs of a default full training run.
        batch_size: the minibatch size of the training loader.
        description: one line for listings.

    They are class attributes of the built-in tasks; a task may also set them per instance.
    """

    name: str = ""
    metric: str = "accuracy"
    mode: str = "max"
    epochs: int = 10
    batch_size: int = 32
    description: str = ""

    @abstractmethod
    def data(self) -> TaskData:
        """The train/val/test split: deterministic (fixed seed) and cached."""

    @abstractmethod
    def model(self, seed: int) -> torch.nn.Module:
        """A fresh model whose initial weights are drawn from `seed`."""

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The training loss of a minibatch (default: cross-entropy on logits)."""
        return torch.nn.functional.cross_entropy(output, target)

    def score(self, output: Tensor, target: Tensor) -> float:
        """The task's `metric` on a whole split (default: accuracy in [0, 1])."""
        return float((output.argmax(dim=-1) == target).float().mean())

    def loader(self, seed: int = 0, split: str = "train") -> BatchLoader:
        """Minibatches of `split` (``"train"``, ``"val"`` or ``"test"``).

        The training loader reshuffles every epoch from `seed`; the val and test loaders keep
        the order. All use `batch_size`.
        """
        if split not in SPLITS:
            raise ValueError(f"{type(self).__name__}.loader: `split` must be one of {SPLITS}, got {split!r}")
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise TaskError(
                f"task {_label(self)!r} has batch_size={size!r}; a task's `batch_size` must be an int >= 1"
            )
        x, y = self.data().split(split)
        return BatchLoader(x, y, size, shuffle=split == "train", seed=seed)

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch of the training loader."""
        return len(self.loader())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _label(task: Task) -> str:
    return task.name or type(task).__name__


def task_epochs(task: Task, where: str = "", instead: str | None = "pass `epochs`") -> int:
    """``task.epochs``, the length of a run not given one, checked.

    Raises:
        TaskError: it is not an int >= 1; the message begins with `where` (the caller), names
            the task and ends with `instead`, what the caller can do instead (None: nothing).
    """
    n = task.epochs
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        alternative = "" if instead is None else f", or {instead}"
        raise TaskError(
            f"{where}task {_label(task)!r} has epochs={n!r}; a task's `epochs` must be an int >= 1"
            f"{alternative}"
        )
    return n


_REGISTRY: dict[str, type[Task]] = {}


def register(cls: T) -> T:
    """Class decorator: make a `Task` subclass available by its `name` to `get` and `load`.

    Raises:
        TypeError: `cls` is not a `Task` subclass.
        ValueError: its name is empty or already taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"register: expected a Task subclass, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: {cls.__name__} needs a non-empty `name`, got {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"register: task name {name!r} is already taken by {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls
    return cls


def names() -> list[str]:
    """The names of the registered tasks, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Task:
    """A new instance of the registered task `name`.

    Raises:
        TaskError: unknown name; the message lists the valid ones.
    """
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise TaskError(f"unknown task {name!r}; valid names: {', '.join(names())}")
    return cls()


def load(ref: str | Task) -> Task:
    """Resolve a task reference: a registered name, ``"path/to/file.py:attr"`` or ``"module:attr"``.

    The attribute (dots allowed: ``"module:obj.task"``) may be a `Task` instance, a `Task`
    subclass (built with no arguments), or a callable with no arguments returning a `Task`. A file
    is executed as a module named after it, with its folder on ``sys.path`` (put first, as
    ``python path/to/file.py`` does, unless it is there already), so it can import the modules
    beside it; the folder stays there, as a script's does, for the imports its task makes later,
    in this process or in the worker processes it starts. Nothing is ever passed to `eval`. A
    `Task` instance is returned as it is.

    Raises:
        TaskError: unknown name, missing file, module or attribute, an attribute that does not
            give a `Task`, or an `ImportError` while a file runs; the message names the reference.
            Other errors raised by a file or a module propagate with a note naming the reference.
    """
    if isinstance(ref, Task):
        return ref
    if not isinstance(ref, str):
        raise TaskError(f"a task reference must be a string or a Task, got {type(ref).__name__}")
    if ":" not in ref:
        if ref in _REGISTRY:
            return get(ref)
        hint = ""
        if ref.endswith(".py") or "/" in ref or "." in ref:
            hint = f" (to load a task from a file or module, name its attribute: '{ref}:task')"
        raise TaskError(
            f"unknown task {ref!r}{hint}; valid names: {', '.join(names())}, "
            f"or 'path/to/file.py:attr' or 'module:attr'"
        )
    where, _, attr = ref.rpartition(":")
    if not where or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise TaskError(
            f"task reference {ref!r}: expected 'path/to/file.py:attr' or 'module:attr' with a "
            f"Python attribute name after the colon"
        )
    is_file = where.endswith(".py") or "/" in where or "\\" in where
    module = _import_file(ref, Path(where)) if is_file else _import_module(ref, where)
    obj: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([where, *attr.split(".")[:i]]) if i else where
            raise TaskError(f"task reference {ref!r}: {owner} has no attribute {part!r}")
        obj = getattr(obj, part)
    return _as_task(ref, obj)


def _import_file(ref: str, path: Path) -> Any:
    if not path.is_file():
        raise TaskError(f"task reference {ref!r}: no such file {str(path)!r}")
    resolved = path.resolve()
    mod_name = f"_lrkit_task_{resolved.stem}_{abs(hash(str(resolved))):x}"
    spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if spec is None or spec.loader is None:
        raise TaskError(f"task reference {ref!r}: cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up here
    folder = str(resolved.parent)
    added = folder not in sys.path
    if added:  # as python does for a script: its folder first, for the modules beside it
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException as e:
        sys.modules.pop(mod_name, None)
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
        if isinstance(e, ImportError):  # a missing dependency: the user's setup, not a bug in lrkit
            lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == str(resolved)]
            at = f", line {lines[-1]}" if lines else ""
            raise TaskError(f"task reference {ref!r}: {path}{at}: {e}") from e
        e.add_note(f"while loading the task reference {ref!r}")
        raise
    return module


def _import_module(ref: str, name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        # only the referenced module (or a parent package) missing is the reference's fault
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise TaskError(f"task reference {ref!r}: no module named {e.name!r}") from None
        e.add_note(f"while loading the task reference {ref!r}")
        raise
    except Exception as e:
        e.add_note(f"while loading the task reference {ref!r}")
        raise


def _no_arguments_error(obj: Any) -> str | None:
    """Why `obj` cannot be called without arguments, or None when it can (or cannot be told)."""
    try:
        inspect.signature(obj).bind()
    except TypeError as e:
        return str(e)
    except ValueError:  # no signature available (some builtins)
        return None
    return None


def _as_task(ref: str, obj: Any) -> Task:
    if isinstance(obj, Task):
        return obj
    if isinstance(obj, type):
        if not issubclass(obj, Task):
            raise TaskError(f"task reference {ref!r}: the class {obj.__name__} is not a lrkit Task subclass")
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise TaskError(
                f"task reference {ref!r}: {obj.__name__} is abstract; it must implement {missing}"
            )
        why = _no_arguments_error(obj)
        if why is not None:
            raise TaskError(f"task reference {ref!r}: cannot build {obj.__name__}() without arguments: {why}")
        return obj()
    if callable(obj):
        why = _no_arguments_error(obj)
        if why is not None:
            raise TaskError(f"task reference {ref!r}: it cannot be called without arguments: {why}")
        result = obj()
        if not isinstance(result, Task):
            raise TaskError(
                f"task reference {ref!r}: the callable returned {type(result).__name__}, not a lrkit Task"
            )
        return result
    raise TaskError(
        f"task reference {ref!r}: expected a Task instance, a Task subclass or a callable returning "
        f"a Task, got {type(obj).__name__}"
    )
