"""Weights: the files, the initial weights a run starts from (a checkpoint, an upcycled dense
model: made by `ablate.training.launch.prepare_init`, loaded by `build`), and what stays
frozen while training (`init.freeze`: the MoE layers, as ST-MoE fine-tunes an upcycled
model (Zoph et al. 2022), or everything else)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ablate.config.schema import FREEZES
from ablate.errors import ConfigError
from ablate.tracking.tags import FROZEN, FROZEN_PARAMS

WEIGHTS_ALLOWED = "a weights file written by ablate (…/weights.pt)"


def save_weights(model: nn.Module, path: str | Path) -> None:
    """model.state_dict() to `path`, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict on CPU; tensors only (weights_only: no code runs from the file)."""
    if not Path(path).is_file():
        raise ConfigError("init.from_checkpoint", str(path), WEIGHTS_ALLOWED, "file not found")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ConfigError("init.from_checkpoint", str(path), WEIGHTS_ALLOWED,
                          f"not readable as weights ({type(e).__name__})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError("init.from_checkpoint", str(path), WEIGHTS_ALLOWED, "not a state dict")
    return sd


@dataclass
class InitialWeights:
    """Where a run's weights start when not from scratch."""

    state: dict[str, torch.Tensor]  # by parameter name, as model.state_dict()
    source: str  # the weights file, named in errors
    tags: dict[str, str]  # ablate.init and what it came from, for the run
    expected: str  # what `state` must be, said when it does not fit the model
    # keys containing this keep the model's own init and `state` may hold keys the model
    # lacks (an upcycled model's fresh routers); None: `state` is exactly the model's
    fresh: str | None = None


def load_initial(model: nn.Module, initial: InitialWeights) -> None:
    """Load `initial.state` into `model`, in place; one ConfigError naming the first
    parameter that does not fit."""
    model_sd, state = model.state_dict(), initial.state

    def kept(name: str) -> bool:
        return initial.fresh is not None and initial.fresh in name

    def refuse(detail: str):
        return ConfigError("init.from_checkpoint", initial.source, initial.expected, detail)

    for name, t in model_sd.items():
        src = state.get(name)
        if not kept(name) and (src is None or src.shape != t.shape):
            got = "missing" if src is None else f"shape {tuple(src.shape)}"
            raise refuse(f"{name}: {got} in the checkpoint, {tuple(t.shape)} in the model")
    extra = [k for k in state if k not in model_sd]
    if initial.fresh is None and extra:
        raise refuse(f"{extra[0]}: in the checkpoint, not in the model")
    model.load_state_dict({k: v for k, v in state.items() if k in model_sd and not kept(k)},
                          strict=False)


def freeze(model: nn.Module, what: str) -> int:
    """requires_grad=False on the MoE layers' parameters (router, experts, shared, gate)
    for `moe`, on everything else for `non_moe`. Returns the number of frozen scalars.
    Buffers are untouched: an aux-loss-free router bias still moves (not a gradient)."""
    if what not in FREEZES:
        raise ConfigError("init.freeze", what, ", ".join(FREEZES))
    if what == "none":
        return 0
    moe = {id(p) for layer in getattr(model, "moe_layers", []) for p in layer.parameters()}
    frozen = 0
    for p in model.parameters():  # tied weights appear once
        if (id(p) in moe) == (what == "moe"):
            p.requires_grad_(False)
            frozen += p.numel()
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("init.freeze", what, "none, or moe for an MoE model",
                          "nothing would be trained")
    return frozen


def freeze_tags(model: nn.Module, what: str) -> dict[str, str]:
    """Freeze `model` as `init.freeze` says; -> the run's tags saying so ({} for none)."""
    if what == "none":
        return {}
    return {FROZEN: what, FROZEN_PARAMS: str(freeze(model, what))}
