"""The LR finder on a CUDA device: the memory it holds beyond what training holds, and what
verification costs with its candidates trained together (vectorized) against one after the other.

Usage::

    python benchmarks/finder_cuda.py                      # the CUDA device, widths 1024 and 4096
    python benchmarks/finder_cuda.py --out finder_cuda.md        # also write the table to a file
    python benchmarks/finder_cuda.py --device cpu --widths 64 --repeats 1   # a smoke run anywhere

The model is an MLP with BatchNorm (256 -> width -> width -> 10) under Adam, on 8192 generated
examples in batches of 128 that sit on the device, with 1024 validation examples. For each width
and each way of running the finder (the sweep alone; the sweep with verification one after the
other; with verification vectorized) the run is repeated and the median taken; the repeats of the
three ways are interleaved. "extra memory" is the peak of ``torch.cuda.max_memory_allocated`` during
the call minus what was allocated before it, in units of the model's training state (weights,
gradients and Adam's two moments: 4x the weights' bytes); "training step" is that figure for three
plain training steps of the same model, for scale.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import lrkit
from lrkit import find_lr


def _model(width: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(256, width), nn.BatchNorm1d(width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10),
    ).to(device)  # fmt: skip


def _data(n: int, seed: int, device: torch.device, bs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(256, 10, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, 256, generator=g)
    y = (x @ teacher + 0.5 * torch.randn(n, 10, generator=g)).argmax(1)
    x, y = x.to(device), y.to(device)
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, n, bs)]


def _measure(fn: Callable[[], Any], device: torch.device) -> tuple[float, int, Any]:
    """Seconds, extra peak bytes on the device (0 off CUDA) and the value of ``fn()``."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    extra = torch.cuda.max_memory_allocated() - base if cuda else 0
    return seconds, extra, out


def run(width: int, device: torch.device, repeats: int, train_steps: int) -> list[dict[str, Any]]:
    train = _data(8192, 0, device, 128)
    val = _data(1024, 1, device, 256)
    model = _model(width, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in train[:3]:  # Adam's moments exist, as they do in the middle of training
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    state_bytes = 4 * sum(p.numel() * p.element_size() for p in model.parameters())

    def train_step() -> None:
        for x, y in train[3:6]:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

    ways: dict[str, dict[str, Any]] = {
        "sweep alone": {"verify": False},
        "verify, one after the other": {"val_loader": val, "train_steps": train_steps, "vectorize": False},
        "verify, trained together": {"val_loader": val, "train_steps": train_steps, "vectorize": True},
    }
    seen: dict[str, list[tuple[float, int, Any]]] = {k: [] for k in ways}
    find_lr(model, opt, F.cross_entropy, train, **ways["verify, trained together"])  # warm-up, untimed
    for _ in range(repeats):
        for name, kwargs in ways.items():
            seen[name].append(
                _measure(lambda kw=kwargs: find_lr(model, opt, F.cross_entropy, train, **kw), device)
            )
    train_seconds, train_extra, _ = _measure(train_step, device)
    rows = [{"way": "training step (x3)", "seconds": train_seconds, "extra": train_extra / state_bytes}]
    for name, runs in seen.items():
        results = [r for _, _, r in runs]
        v = results[0].verification
        rows.append(
            {
                "way": name,
                "seconds": statistics.median(s for s, _, _ in runs),
                "verify_seconds": statistics.median(r.verification.seconds for r in results) if v else None,
                "extra": statistics.median(e for _, e, _ in runs) / state_bytes,
                "vectorized": None if v is None else v.vectorized,
                "suggestions": sorted({f"{r.suggestion:.2g}" for r in results}),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--widths", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--train-steps", type=int, default=1000, help="the planned training run (verification's budget)"
    )
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/finder_cuda.py: no CUDA device here (pass --device cpu for a smoke run)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    command = " ".join(shlex.quote(a) for a in ["benchmarks/finder_cuda.py", *(argv or sys.argv[1:])])
    lines = [
        f"`python {command}` on "
        f"{name}; torch {torch.__version__}, lrkit {lrkit.__version__}; medians of {args.repeats} runs.",
        "",
        "| width | weights | run | seconds | of which verification | extra memory (training states) | "
        "suggestions |",
        "|---:|---:|---|---:|---:|---:|---|",
    ]
    for width in args.widths:
        params = sum(p.numel() for p in _model(width, torch.device("cpu")).parameters())
        for row in run(width, device, args.repeats, args.train_steps):
            verify = row.get("verify_seconds")
            way = row["way"] + (
                "" if row.get("vectorized") in (None, row["way"].endswith("together")) else " (fell back)"
            )
            lines.append(
                f"| {width} | {params / 1e6:.1f}M | {way} | {row['seconds']:.2f} | "
                f"{'' if verify is None else f'{verify:.2f}'} | {row['extra']:.2f} | "
                f"{', '.join(row.get('suggestions', []))} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
