"""Sizes derived from the config, resolved once: the budget, what `granularity`, `d_expert`
and `d_shared` mean, and which blocks are MoE.

`load_config` calls `apply_budget` (budget matching: solve the FFN widths so every arm
activates the same FFN units, setting `d_ff` and `d_expert`), then `resolve`;
from then on the layer, the parameter accounting, run names and upcycling read
`model.moe.routed_experts`, `routed_top_k`, `expert_width` and `shared_width` and never
redo the arithmetic. A `MoEConfig` built in Python without `load_config` (tests, notebooks)
is resolved by `resolved` where its layer is built: the same function, once.
"""

from __future__ import annotations

import dataclasses

from ablate.config.schema import ModelConfig, MoEConfig, RunConfig
from ablate.errors import ConfigError

DERIVED = ("routed_experts", "routed_top_k", "expert_width", "shared_width")


def routed(moe: MoEConfig) -> tuple[int, int]:
    """(E, K): routed experts in the layer and per token after segmentation (DeepSeekMoE:
    each of the n_experts split in `granularity`, each token taking granularity x top_k)."""
    return moe.n_experts * moe.granularity, moe.top_k * moe.granularity


def fill(moe: MoEConfig, d_ff: int) -> MoEConfig:
    """Set `moe`'s derived sizes from its own keys and the model's `d_ff`, in place; -> moe.
    A width that `granularity` does not divide is floored here and refused by `validate`."""
    moe.routed_experts, moe.routed_top_k = routed(moe)
    moe.expert_width = (moe.d_expert or d_ff) // moe.granularity
    moe.shared_width = moe.d_shared or moe.expert_width
    return moe


def resolve(cfg: RunConfig) -> None:
    """load_config's resolve step. A derived key the user set is refused unless it is what
    it resolves to anyway (so a run's own config.yaml loads back)."""
    moe = cfg.model.moe
    given = {name: getattr(moe, name) for name in DERIVED}
    fill(moe, cfg.model.d_ff)
    for name, value in given.items():
        if value is not None and value != getattr(moe, name):
            raise ConfigError(f"model.moe.{name}", value, f"unset; it derives to "
                              f"{getattr(moe, name)} here", "a derived size: set the keys it "
                              "comes from instead")


def resolved(moe: MoEConfig, d_ff: int) -> MoEConfig:
    """`moe` itself when load_config resolved it; else a resolved copy (the caller's config
    is left as it was)."""
    if all(getattr(moe, name) is not None for name in DERIVED):
        return moe
    return fill(dataclasses.replace(moe), d_ff)


def moe_layer_ids(cfg: ModelConfig) -> list[int]:
    """Indices of the blocks whose FFN is an MoE layer."""
    if cfg.ffn != "moe":
        return []
    m = cfg.moe
    return [i for i in range(m.first_dense, cfg.n_layers) if (i - m.first_dense) % m.moe_every == 0]


def apply_budget(cfg: RunConfig) -> None:
    """Set model.d_ff (dense layers) and model.moe.d_expert from budget.ffn_active, in place."""
    units = cfg.budget.ffn_active
    if units is None:
        return
    if units <= 0:
        raise ConfigError("budget.ffn_active", units, "an integer > 0")
    m = cfg.model
    m.d_ff = units  # dense layers (and dense-first / hybrid layers of an MoE model)
    if m.ffn != "moe":
        return
    moe = m.moe
    _, k = routed(moe)  # routed experts per token after segmentation
    if moe.d_shared is not None:
        width, slots = units - moe.n_shared * moe.d_shared, k
    else:  # shared experts as wide as a routed (fine-grained) expert
        width, slots = units, k + moe.n_shared
    if width <= 0 or width % slots:
        raise ConfigError("budget.ffn_active", units,
                          f"a multiple of {slots} (top_k*granularity + shared slots) that leaves "
                          "a positive routed width")
    moe.d_expert = width // slots * moe.granularity
