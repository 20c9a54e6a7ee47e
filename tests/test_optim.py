"""The optimizer registry: every name builds and steps, defaults match the table, state dicts
resume bit for bit, errors name what is wrong."""

from __future__ import annotations

import io
import math

import pytest
import torch

from lrkit.optim import KFAC, REGISTRY, DoG, OptimizerSpec, Prodigy, get, make, names

# name -> (optimizer class, default LR, settings that differ from the class's defaults)
TABLE: dict[str, tuple[type[torch.optim.Optimizer], float, dict[str, object]]] = {
    "sgd": (torch.optim.SGD, 1e-2, {"momentum": 0, "nesterov": False}),
    "momentum": (torch.optim.SGD, 1e-3, {"momentum": 0.9, "nesterov": False}),
    "nesterov": (torch.optim.SGD, 1e-3, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, 1e-2, {}),
    "rmsprop": (torch.optim.RMSprop, 1e-3, {}),
    "adam": (torch.optim.Adam, 1e-3, {"weight_decay": 0}),
    "adamw": (torch.optim.AdamW, 1e-3, {"weight_decay": 0.01}),
    "kfac": (KFAC, 0.1, {"momentum": 0.9, "nesterov": False}),
    "dog": (DoG, 1.0, {"layer_wise": False, "reps_rel": 1e-6}),
    "ldog": (DoG, 1.0, {"layer_wise": True, "reps_rel": 1e-6}),
    "prodigy": (Prodigy, 1.0, {"betas": (0.9, 0.999), "d": 1e-6}),
}
#: The names whose step size is not their `lr`: they report it with ``effective_lr()``.
EFFECTIVE = {"kfac", "dog", "ldog", "prodigy"}


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
    opt = make(name, model)
    assert type(opt) is cls
    assert hasattr(opt, "effective_lr") == (name in EFFECTIVE)
    assert opt.defaults["lr"] == lr
    for key, value in settings.items():
        assert opt.defaults[key] == value, key
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(8, 4)).pow(2).mean().backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if name in EFFECTIVE:
        assert 0.0 < opt.effective_lr() <= 1.0  # type: ignore[attr-defined]


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _steps(model: torch.nn.Module, opt: torch.optim.Optimizer, seeds: range) -> None:
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("name", list(TABLE))
def test_every_name_resumes_bit_for_bit_from_its_state_dict(name: str) -> None:
    torch.manual_seed(0)
    model = _mlp()
    opt = make(name, model, lr=get(name).default_lr * 3)  # large enough to move every method
    _steps(model, opt, range(4))
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = torch.load(_roundtrip(opt.state_dict()), weights_only=True)
    _steps(model, opt, range(4, 9))

    fresh = _mlp()
    fresh.load_state_dict(saved_model)
    resumed = make(name, fresh, lr=1e-4)  # the LR comes back from the state dict
    resumed.load_state_dict(saved_opt)
    _steps(fresh, resumed, range(4, 9))
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(saved_model["0.weight"], model.state_dict()["0.weight"])


def _roundtrip(state: dict[str, object]) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_kfac_needs_the_model_not_its_parameters() -> None:
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match=r"'kfac' preconditions the model's layers; pass the torch\.nn"):
        make("kfac", model.parameters())
    assert get("kfac").needs_model and not get("adam").needs_model


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
    # torch's own checks come back in make's words: the optimizer, the arguments and their values
    told = r"^make: optimizer 'nesterov' .* rejects the arguments \['momentum'\] \(momentum=0\): Nesterov"
    with pytest.raises(ValueError, match=told):
        make("nesterov", torch.nn.Linear(2, 1).parameters(), momentum=0)
    with pytest.raises(ValueError, match=r"^make: optimizer 'adam' .*\(betas=\(1.5, 0.9\)\): Invalid beta"):
        make("adam", torch.nn.Linear(2, 1).parameters(), betas=(1.5, 0.9))
    with pytest.raises(ValueError, match=r"^make: optimizer 'sgd' .* cannot be built: params argument"):
        make("sgd", next(torch.nn.Linear(2, 1).parameters()))


def test_a_tensor_lr_is_given_to_the_optimizer_as_it_is() -> None:
    import numpy as np

    lr = torch.tensor(1e-3)
    opt = make("adam", torch.nn.Linear(2, 1).parameters(), lr)
    assert opt.param_groups[0]["lr"] is lr
    assert make("adam", torch.nn.Linear(2, 1).parameters(), np.float32(1e-3)).defaults["lr"] == pytest.approx(
        1e-3
    )
    with pytest.raises(ValueError, match=r"`lr` must be a finite number > 0"):
        make("adam", torch.nn.Linear(2, 1).parameters(), torch.tensor(-1.0))
