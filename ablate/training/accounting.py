"""Parameter and FLOP accounting, predicted from the config alone (no model built).

params_total  every parameter of the model.
params_active the parameters one token touches: routed experts count K of E, the router,
              shared experts and everything outside the FFNs count fully.
flops_per_token training FLOPs per token (forward + backward = 3x forward, Kaplan et al.):
              6 * (active params that do matmuls per token: all but the embedding lookup,
              the LM head included) + 6 * n_layers * S * D for attention scores and values.
"""

from __future__ import annotations

from ablate.config.schema import ModelConfig
from ablate.models.moe.sizes import moe_dims, moe_layer_ids
from ablate.registry import ROUTERS


def _ffn_params(cfg: ModelConfig, moe: bool) -> tuple[int, int]:
    """(total, active) parameters of one block's FFN."""
    D = cfg.d_model
    if not moe:
        n = 3 * D * cfg.d_ff
        return n, n
    d = moe_dims(cfg.moe, cfg.d_ff)
    router = ROUTERS.get(cfg.moe.router.name).obj.n_params(cfg.moe.router, D, d.n_experts)
    shared = 3 * D * d.n_shared * d.d_shared + (D if d.n_shared and cfg.moe.shared_gate else 0)
    expert = 3 * D * d.d_expert
    return router + shared + d.n_experts * expert, router + shared + d.top_k * expert


def param_counts(cfg: ModelConfig, seq_len: int) -> dict[str, int]:
    assert cfg.vocab_size is not None
    D, V, L = cfg.d_model, cfg.vocab_size, cfg.n_layers
    embed = V * D
    head = 0 if cfg.tie_embeddings else V * D
    attn = 4 * D * D + 2 * D  # qkv + proj + the block's two RMSNorm weights
    moe_ids = set(moe_layer_ids(cfg))
    total = active = embed + head + D  # + final norm
    for i in range(L):
        ffn_total, ffn_active = _ffn_params(cfg, i in moe_ids)
        total += attn + ffn_total
        active += attn + ffn_active
    matmul_active = active - embed + V * D - head  # lookup is free; the head matmul is not
    flops = 6 * matmul_active + 6 * L * seq_len * D
    return {
        "params_total": total,
        "params_active": active,
        "params_embedding": embed,
        "flops_per_token": flops,
        "n_moe_layers": len(moe_ids),
    }
