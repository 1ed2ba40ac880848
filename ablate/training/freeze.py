"""What stays frozen while training (`init.freeze`): the MoE layers (Zoph et al. 2022, ST-MoE:
fine-tune only the rest of an upcycled model) or everything else."""

from __future__ import annotations

from torch import nn

from ablate.config.schema import FREEZES
from ablate.errors import ConfigError
from ablate.tracking.tags import FROZEN, FROZEN_PARAMS


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
