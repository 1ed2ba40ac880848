"""Budget matching: solve the FFN widths so every arm activates the same FFN units."""

from __future__ import annotations

from ablate.config.derived import routed
from ablate.config.schema import RunConfig
from ablate.errors import ConfigError


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
