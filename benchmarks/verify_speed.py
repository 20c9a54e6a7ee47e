"""What verification costs with its candidates trained together (vectorized) and one after the
other, per optimizer, on a built-in task, on one CPU thread.

    .venv/bin/python benchmarks/verify_speed.py [--task mlp-digits] [--optimizers momentum adam ...]

`find_lr` as `benchmarks/finder.py` calls it (validation split, the run's length as
`train_steps`, constant target), with each optimizer from the `lrkit.optim` registry; medians of
5 runs, the two ways interleaved. Prints a Markdown table: verification seconds each way, their
ratio, and whether the two picked the same LR.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch

from lrkit import optim
from lrkit.finder import find_lr
from lrkit.tasks import get


def _verify_seconds(task_name: str, optimizer: str, vectorize: bool) -> tuple[float, bool, float]:
    task = get(task_name)
    torch.manual_seed(0)
    model = task.model(0)
    opt = optim.make(optimizer, model)
    loader = task.loader(0)
    val, run = task.loader(0, "val"), task.epochs * len(loader)
    r = find_lr(model, opt, task.loss, loader, val_loader=val, train_steps=run, vectorize=vectorize)
    v = r.verification
    assert v is not None  # verification runs: `val_loader` is given
    return v.seconds, v.vectorized, r.suggestion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mlp-digits")
    ap.add_argument("--optimizers", nargs="+", default=["momentum", "adam", "rmsprop", "adagrad"])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    command = f"`.venv/bin/python benchmarks/verify_speed.py --task {args.task}`"
    print(f"{command}: one CPU thread, medians of {args.repeats}\n")
    print("| optimizer | together (s) | one after the other (s) | ratio | trained together | same pick |")
    print("|---|---:|---:|---:|---|---|")
    for name in args.optimizers:
        _verify_seconds(args.task, name, True)  # warm-up
        runs: dict[bool, list[tuple[float, bool, float]]] = {True: [], False: []}
        for rep in range(args.repeats):
            for vectorize in (True, False) if rep % 2 == 0 else (False, True):
                runs[vectorize].append(_verify_seconds(args.task, name, vectorize))
        on = statistics.median(r[0] for r in runs[True])
        off = statistics.median(r[0] for r in runs[False])
        same = runs[True][0][2] == runs[False][0][2]
        together = runs[True][0][1]
        print(f"| {name} | {on:.3f} | {off:.3f} | {off / on:.2f}x | {together} | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
