"""Verification of a transformer's candidate LRs: trained together (vectorized, with attention
batched as `lrkit.finder._vectorized._batchable_attention` describes) against one after the
other, with attention dropout 0.1 and 0.

Usage::

    python benchmarks/finder_attention.py            # on the CUDA device if there is one, else the CPU
    python benchmarks/finder_attention.py --groups   # AdamW in two param groups: no weight decay on
                                                     # biases and norms, the usual transformer recipe

On CUDA: a 4-layer encoder of width 256 (8 heads) over sequences of 128 tokens in batches of 32;
on the CPU (one thread) a 1-layer encoder of width 32 (4 heads) over 24 tokens. Tokens are drawn
from 1000 symbols, the label is the most frequent of the first 8 tokens modulo 10. `find_lr` with
a 60-step sweep, 8 validation batches and ``train_steps=600`` (5 candidates of 120 steps), under
AdamW; medians of 3 interleaved runs. "peak extra" is the peak of
``torch.cuda.max_memory_allocated`` during the call minus what was allocated before it (0 on the
CPU); "training state" is weights, gradients and AdamW's two moments.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch
import torch.nn.functional as F
from finder_cuda import _measure  # seconds and peak device memory of one call
from torch import nn

from lrkit import find_lr

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
WIDTH, LAYERS, LENGTH, BATCH = (256, 4, 128, 32) if DEVICE.type == "cuda" else (32, 1, 24, 32)


class Encoder(nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        heads = 8 if WIDTH >= 64 else 4
        layer = nn.TransformerEncoderLayer(WIDTH, heads, 4 * WIDTH, dropout=dropout, batch_first=True)
        self.emb = nn.Embedding(1000, WIDTH)
        self.pos = nn.Parameter(0.02 * torch.randn(LENGTH, WIDTH))
        self.enc = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.enc(self.emb(x) + self.pos).mean(1))
        return out


def _data() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 1000, (64 * BATCH, LENGTH), generator=g)
    y = (x[:, :8] % 10).mode(1).values
    x, y = x.to(DEVICE), y.to(DEVICE)
    batches = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return batches[:-8], batches[-8:]


def _optimizer(model: nn.Module, groups: bool) -> torch.optim.Optimizer:
    if not groups:
        return torch.optim.AdamW(model.parameters(), lr=1e-3)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n != "pos"]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2 or n == "pos"]
    return torch.optim.AdamW(
        [{"params": decay}, {"params": rest, "weight_decay": 0.0}], lr=1e-3, weight_decay=0.01
    )


def _run(dropout: float, vectorize: bool, groups: bool) -> tuple[float, float, bool, float, float, float]:
    """Seconds in all and in verification, whether it was vectorized, peak extra GiB, GiB of one
    training state, and the suggestion."""
    train, val = _data()
    torch.manual_seed(0)
    model = Encoder(dropout).to(DEVICE)
    opt = _optimizer(model, groups)
    state = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    kwargs = {"val_loader": val, "train_steps": 600, "vectorize": vectorize, "steps": 60}
    seconds, extra, r = _measure(lambda: find_lr(model, opt, F.cross_entropy, train, **kwargs), DEVICE)
    peak = extra / 2**30
    v = r.verification
    assert v is not None  # verification runs: `val_loader` is given
    return seconds, v.seconds, v.vectorized, peak, state / 2**30, r.suggestion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", action="store_true", help="AdamW in two param groups")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if DEVICE.type == "cpu":
        torch.set_num_threads(1)
    print(
        f"{DEVICE}; torch {torch.__version__}; encoder {LAYERS}x{WIDTH}, seq {LENGTH}, batch {BATCH}; "
        f"5 candidates x 120 steps; {'two param groups; ' if args.groups else ''}medians of 3"
    )
    for dropout in (0.1, 0.0):
        rows: dict[bool, list[tuple[float, float, bool, float, float, float]]] = {True: [], False: []}
        for rep in range(3):
            for vectorize in (True, False) if rep % 2 == 0 else (False, True):
                rows[vectorize].append(_run(dropout, vectorize, args.groups))
        for vectorize in (False, True):
            rs = rows[vectorize]
            print(
                f"dropout {dropout} {'together' if vectorize else 'one after the other'}: "
                f"total {statistics.median(r[0] for r in rs):.2f}s "
                f"verify {statistics.median(r[1] for r in rs):.2f}s vectorized={rs[0][2]} "
                f"peak extra {max(r[3] for r in rs):.2f} GiB (training state {rs[0][4]:.3f} GiB) "
                f"pick {rs[0][5]:.3g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
