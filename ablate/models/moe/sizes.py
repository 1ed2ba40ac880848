"""Which blocks are MoE. The derived sizes of one MoE layer (routed experts, K, widths) are
config keys resolved once by `ablate.config.derived`, not recomputed here."""

from __future__ import annotations

from ablate.config.schema import ModelConfig


def moe_layer_ids(cfg: ModelConfig) -> list[int]:
    """Indices of the blocks whose FFN is an MoE layer."""
    if cfg.ffn != "moe":
        return []
    m = cfg.moe
    return [i for i in range(m.first_dense, cfg.n_layers) if (i - m.first_dense) % m.moe_every == 0]
