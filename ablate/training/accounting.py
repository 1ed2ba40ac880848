"""Parameter, FLOP and KV-cache accounting, predicted from the config alone (no model built).

params_total  every parameter of the model, the MTP modules included.
params_active the parameters one token touches in the model used for inference: routed
              experts count K of E, the router, shared experts and everything outside the
              FFNs count fully. MTP modules do not count (they are dropped after training, or
              serve speculative decoding, as in DeepSeek-V3).
flops_per_token training FLOPs per token (forward + backward = 3x forward, Kaplan et al.):
              6 * (active params that do matmuls per token: all but the embedding lookup,
              the LM head included) + 3 * n_layers * S * (query/key + value width of all
              heads) for attention scores and values (6 * n_layers * S * D for MHA). The MTP
              modules run in training, so they count here: their block, merge projection and
              another pass through the shared head, as if on every position (depth k in fact
              drops the block's last k positions: an over-count of k / S).
kv_cache_bytes_per_token what inference caches per token, summed over layers, at 2 bytes an
              element (bf16): MHA 2 * n_heads * head_dim = 2 * d_model per layer, MLA its
              latent plus the shared RoPE key, kv_rank + rope_dim (DeepSeek-V2 §2.1.4).
"""

from __future__ import annotations

from ablate.config.derived import moe_layer_ids
from ablate.config.schema import ModelConfig
from ablate.models.mla import mla_dims
from ablate.registry import ROUTERS

KV_CACHE_BYTES = 2  # bf16, the usual inference dtype of a KV cache


def _ffn_params(cfg: ModelConfig, moe: bool) -> tuple[int, int]:
    """(total, active) parameters of one block's FFN."""
    D = cfg.d_model
    if not moe:
        n = 3 * D * cfg.d_ff
        return n, n
    m = cfg.moe  # its derived sizes, resolved by load_config
    router = ROUTERS.get(m.router.name).obj.n_params(m.router, D, m.routed_experts)
    shared = 3 * D * m.n_shared * m.shared_width + (D if m.n_shared and m.shared_gate else 0)
    expert = 3 * D * m.expert_width
    return router + shared + m.routed_experts * expert, router + shared + m.routed_top_k * expert


def _attention(cfg: ModelConfig) -> tuple[int, int, int]:
    """(parameters, query/key width + value width over all heads, cached elements per token)
    of one block's attention."""
    D = cfg.d_model
    if cfg.attention == "mla":
        d = mla_dims(cfg.mla, D, cfg.n_heads)
        return d.n_params(D), d.n_heads * (d.qk_dim + d.v_head_dim), d.cache_floats
    return 4 * D * D, 2 * D, 2 * D  # qkv + proj; keys and values of every head cached


def param_counts(cfg: ModelConfig, seq_len: int) -> dict[str, int]:
    assert cfg.vocab_size is not None
    D, V, L = cfg.d_model, cfg.vocab_size, cfg.n_layers
    embed = V * D
    head = 0 if cfg.tie_embeddings else V * D
    attn_params, attn_width, cache = _attention(cfg)
    attn = attn_params + 2 * D  # + the block's two RMSNorm weights
    moe_ids = set(moe_layer_ids(cfg))
    total = active = embed + head + D  # + final norm
    for i in range(L):
        ffn_total, ffn_active = _ffn_params(cfg, i in moe_ids)
        total += attn + ffn_total
        active += attn + ffn_active
    matmul_active = active - embed + V * D - head  # lookup is free; the head matmul is not
    scores = 3 * seq_len * attn_width  # QK^T and AV of one block (Kaplan's 2 n_ctx d_attn, x3)
    flops = 6 * matmul_active + L * scores
    # MTP (training only): per depth two RMSNorms in, the 2D -> D merge, a dense block, the
    # output RMSNorm; the shared embedding and head add no parameters, but the head runs again
    mtp = cfg.mtp.depth * (2 * D + 2 * D * D + attn + _ffn_params(cfg, False)[0] + D)
    total += mtp
    flops += 6 * (mtp + cfg.mtp.depth * V * D) + cfg.mtp.depth * scores
    return {
        "params_total": total,
        "params_active": active,
        "params_embedding": embed,
        "flops_per_token": flops,
        "kv_cache_bytes_per_token": L * cache * KV_CACHE_BYTES,
        "n_moe_layers": len(moe_ids),
    }
