"""Built-in learning problems that need no download, and the `Task` interface for your own.

A `Task` bundles a fixed train/val/test split, a model factory, a loss and a score. The built-in
tasks (`names`) train in about a second on one CPU thread, and their metric depends on the
learning rate, so they serve the LR finder, the command line, the tests and the benchmarks.
`load` resolves a registered name, ``"path/to/file.py:attr"`` or ``"module:attr"``; `train` runs
one short training with a named optimizer and schedule, and `evaluate_split` scores a model
on a whole split.

>>> from lrkit.tasks import get, names, train
>>> names()
['cnn-digits', 'logreg-digits', 'lstm-sequence', 'mlp-diabetes', 'mlp-digits', 'mlp-spirals']
>>> task = get("mlp-digits")
>>> task.metric, task.mode, tuple(task.data().train[0].shape)
('accuracy', 'max', (1078, 64))
"""

from lrkit.tasks._base import (
    SPLITS,
    BatchLoader,
    Task,
    TaskData,
    TaskError,
    get,
    load,
    names,
    register,
)
from lrkit.tasks._builtin import (
    CnnDigits,
    LogregDigits,
    LstmSequence,
    MlpDiabetes,
    MlpDigits,
    MlpSpirals,
    majority_sequences,
    spirals,
)
from lrkit.tasks._run import EVAL_CHUNK, OPTIMIZERS, RunResult, evaluate_split, make_optimizer, train

__all__ = [
    "EVAL_CHUNK",
    "OPTIMIZERS",
    "SPLITS",
    "BatchLoader",
    "CnnDigits",
    "LogregDigits",
    "LstmSequence",
    "MlpDiabetes",
    "MlpDigits",
    "MlpSpirals",
    "RunResult",
    "Task",
    "TaskData",
    "TaskError",
    "evaluate_split",
    "get",
    "load",
    "majority_sequences",
    "make_optimizer",
    "names",
    "register",
    "spirals",
    "train",
]
