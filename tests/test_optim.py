"""The optimizer registry: every name builds and steps, defaults match the table, errors name
what is wrong."""

from __future__ import annotations

import math

import pytest
import torch

from lrkit.optim import REGISTRY, OptimizerSpec, get, make, names

# name -> (torch class, default LR, settings that differ from torch's defaults)
TABLE: dict[str, tuple[type[torch.optim.Optimizer], float, dict[str, object]]] = {
    "sgd": (torch.optim.SGD, 1e-2, {"momentum": 0, "nesterov": False}),
    "momentum": (torch.optim.SGD, 1e-3, {"momentum": 0.9, "nesterov": False}),
    "nesterov": (torch.optim.SGD, 1e-3, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, 1e-2, {}),
    "rmsprop": (torch.optim.RMSprop, 1e-3, {}),
    "adam": (torch.optim.Adam, 1e-3, {"weight_decay": 0}),
    "adamw": (torch.optim.AdamW, 1e-3, {"weight_decay": 0.01}),
}


def test_names_are_the_table() -> None:
    assert names() == list(TABLE)
    assert list(REGISTRY) == names()


@pytest.mark.parametrize("name", list(TABLE))
def test_every_name_builds_with_its_default_and_steps(name: str) -> None:
    cls, lr, settings = TABLE[name]
    spec = get(name)
    assert isinstance(spec, OptimizerSpec)
    assert spec.name == name and spec.default_lr == lr
    assert isinstance(spec.reason, str) and len(spec.reason) > 20 and "\n" not in spec.reason
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = make(name, model.parameters())
    assert type(opt) is cls
    assert opt.defaults["lr"] == lr
    for key, value in settings.items():
        assert opt.defaults[key] == value, key
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(8, 4)).pow(2).mean().backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_lr_and_overrides() -> None:
    p = torch.nn.Linear(2, 1).parameters
    assert make("adam", p(), lr=3e-4).defaults["lr"] == 3e-4
    assert make("adam", p(), 0.5).defaults["lr"] == 0.5
    opt = make("momentum", p(), momentum=0.95, weight_decay=1e-4)
    assert opt.defaults["momentum"] == 0.95 and opt.defaults["weight_decay"] == 1e-4
    assert make("adamw", p(), weight_decay=0.1).defaults["weight_decay"] == 0.1
    # the registry's own settings are not changed by an override
    assert dict(get("momentum").kwargs) == {"momentum": 0.9}


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'") as e:
        make("adamm", torch.nn.Linear(2, 1).parameters())
    for name in TABLE:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="valid names: sgd, momentum"):
        get("lbfgs")
    with pytest.raises(ValueError, match="unknown optimizer"):
        get(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("lr", [0, -1e-3, math.nan, math.inf, True, "0.1"])
def test_bad_lr_is_named(lr: object) -> None:
    with pytest.raises(ValueError, match=r"`lr` must be a finite number > 0.*lr="):
        make("sgd", torch.nn.Linear(2, 1).parameters(), lr=lr)  # type: ignore[arg-type]


def test_bad_override_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="rejects the arguments \\['betas'\\]"):
        make("sgd", torch.nn.Linear(2, 1).parameters(), betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="momentum"):
        make("momentum", torch.nn.Linear(2, 1).parameters(), momentum=-1.0)
