"""Framework adapters. Each submodule imports its framework; this package imports none.

- `lrkit.adapters.torch`: `ScheduleLR`, a drop-in `torch.optim.lr_scheduler` scheduler.
"""

__all__: list[str] = []
