"""Training checkpoints: atomic writes, safe loads (``weights_only=True``), and RNG states as
plain tensors and numbers.

A checkpoint is a dict (written with `torch.save`) with these keys:

- ``format``: `CHECKPOINT_FORMAT`;
- ``epoch``: epochs finished; ``step``: optimizer steps applied;
- ``model``, ``optimizer``, ``scheduler``: the state dicts (the scheduler's is plain data);
- ``history``: `History.to_dict()`; ``early_stopping``: its state dict, or None;
- ``best_model``: the best epoch's model state dict when early stopping restores it, else None;
- ``scaler``: the `GradScaler` state dict of a CUDA mixed-precision run, else None;
- ``rng``: `rng_state()`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrkit._io import atomic_file

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

#: Identifies an lrkit training checkpoint and its layout.
CHECKPOINT_FORMAT = "lrkit.checkpoint/1"

_REQUIRED: dict[str, type] = {
    "epoch": int,
    "step": int,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "history": dict,
    "rng": dict,
}


class CheckpointError(ValueError):
    """A file that is not a readable lrkit checkpoint (truncated, foreign, or malformed)."""


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), NumPy and Python RNG states as tensors, ints, floats and lists.

    Everything in it loads with ``torch.load(..., weights_only=True)``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states saved by `rng_state` (CUDA ones only where the devices match)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss_next"]))


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any], *, tag: str = CHECKPOINT_FORMAT) -> Path:
    """Write `checkpoint` to `path` atomically.

    The data goes to a temporary file in the same folder, is flushed and fsynced, and then
    replaces `path` in one `os.replace` (`lrkit._io.atomic_file`): a crash or an error at any
    point leaves the previous file at `path` as it was. The format tag is added:
    `CHECKPOINT_FORMAT` for a training checkpoint that `load_checkpoint` reads, or another `tag`
    for other files written the same way.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**checkpoint, "format": tag}
    with atomic_file(path) as f:
        torch.save(data, f)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an lrkit checkpoint with ``torch.load(path, weights_only=True)`` onto the CPU.

    Raises:
        CheckpointError: the file is missing, unreadable or truncated, not an lrkit checkpoint, or
            lacks a field; the message names the path and the problem.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.pt"
    >>> _ = p.write_bytes(b"not a checkpoint")
    >>> load_checkpoint(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrkit.train._checkpoint.CheckpointError: .../x.pt: not a readable torch file (truncated or corrupt?): ...
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable torch file (truncated or corrupt?): {msg}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path}: not an lrkit training checkpoint (expected format {CHECKPOINT_FORMAT!r}, got {got!r})"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise CheckpointError(
                f"{path}: malformed lrkit checkpoint: `{key}` is missing or not a {kind.__name__}"
            )
    return data
