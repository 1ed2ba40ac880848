"""Derived MoE sizes: what `granularity`, `d_expert` and `d_shared` resolve to."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.config.schema import MoEConfig, ModelConfig


@dataclass(frozen=True)
class MoEDims:
    n_experts: int  # routed experts in the layer (n_experts * granularity)
    top_k: int  # routed experts per token (top_k * granularity)
    d_expert: int  # hidden width of one routed expert (d_expert / granularity)
    n_shared: int
    d_shared: int  # hidden width of one shared expert


def moe_dims(cfg: MoEConfig, d_ff: int) -> MoEDims:
    m = cfg.granularity
    d_exp = (cfg.d_expert or d_ff) // m
    return MoEDims(cfg.n_experts * m, cfg.top_k * m, d_exp, cfg.n_shared, cfg.d_shared or d_exp)


def moe_layer_ids(cfg: ModelConfig) -> list[int]:
    """Indices of the blocks whose FFN is an MoE layer."""
    if cfg.ffn != "moe":
        return []
    m = cfg.moe
    return [i for i in range(m.first_dense, cfg.n_layers) if (i - m.first_dense) % m.moe_every == 0]
