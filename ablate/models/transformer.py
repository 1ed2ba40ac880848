"""Decoder-only transformer (pre-norm, RMSNorm, RoPE, SDPA, SwiGLU or MoE FFN), with MHA or
MLA attention (mla.py) and optional multi-token prediction modules after it (mtp.py).

Legend: B batch, S sequence, D d_model, V vocab.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.config.derived import moe_layer_ids
from ablate.config.schema import ModelConfig
from ablate.models.attention import CausalSelfAttention, RMSNorm, rope_cache
from ablate.models.mla import MultiHeadLatentAttention
from ablate.models.mlp import SwiGLU
from ablate.models.moe.layer import MoELayer
from ablate.models.mtp import MTP


def attention(cfg: ModelConfig) -> nn.Module:
    """The block's self-attention: `model.attention` = mha | mla."""
    if cfg.attention == "mla":
        return MultiHeadLatentAttention(cfg.mla, cfg.d_model, cfg.n_heads,
                                        cfg.dropout, cfg.norm_eps)
    return CausalSelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout)


def rope_width(cfg: ModelConfig) -> int:
    """The width RoPE rotates: a whole MHA head, or MLA's decoupled part d_h^R."""
    return cfg.mla.rope_dim if cfg.attention == "mla" else cfg.d_model // cfg.n_heads


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, moe: bool):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = (MoELayer(cfg.moe, cfg.d_model, cfg.d_ff) if moe
                    else SwiGLU(cfg.d_model, cfg.d_ff))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, token_ids):
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin))
        h = self.ffn_norm(x)
        if isinstance(self.ffn, MoELayer):
            y, aux = self.ffn(h, token_ids)
        else:
            y, aux = self.ffn(h), {}
        return x + self.drop(y), aux


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, max_seq_len: int):
        super().__init__()
        assert cfg.vocab_size is not None, "resolve model.vocab_size from the tokenizer first"
        self.cfg = cfg
        moe_ids = set(moe_layer_ids(cfg))
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i in moe_ids) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.mtp = None
        if cfg.mtp.depth:  # built on a forked RNG: the main weights then start as at depth 0
            with torch.random.fork_rng(devices=[]):  # (reset_parameters draws them first)
                blocks = [Block(cfg, moe=False) for _ in range(cfg.mtp.depth)]  # dense: see mtp.py
                self.mtp = MTP(cfg.d_model, cfg.norm_eps, blocks)
        cos, sin = rope_cache(max_seq_len, rope_width(cfg), cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, init_std) for every matrix, drawn in parameter order (the order fixes what a
        seed means); residual projections at init_std / sqrt(2 n_layers) (GPT-2). Routers
        own their init (RouterConfig.init); routed experts draw theirs (w13, then w2 as a
        residual projection) when their w13 comes up."""
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.n_layers)  # residual projections (GPT-2)
        for name, p in self.named_parameters():
            if name.endswith("router.weight") or p.dim() < 2 or name.endswith("experts.w2"):
                continue  # experts.w2 was drawn with experts.w13, the parameter before it
            if name.endswith("experts.w13"):
                self.get_submodule(name.rpartition(".")[0]).reset_parameters(std, w2_std=out_std)
            else:
                nn.init.normal_(p,
                                std=out_std if name.endswith(("proj.weight", "w2.weight")) else std)

    @property
    def moe_layers(self) -> list[MoELayer]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoELayer)]

    def forward(self, idx_BS: torch.Tensor):
        """token ids (B, S) -> logits (B, S, V), {aux name: mean over MoE layers}."""
        h_BSD, aux = self.hidden(idx_BS)
        return self.head(self.norm(h_BSD)), aux

    def forward_mtp(self, idx_BS: torch.Tensor):
        """forward's (logits, aux) and the MTP modules' logits: [(B, S-k, V) for k = 1..depth],
        position i of depth k predicting token i+k+1 (mtp.py). Training only."""
        h_BSD, aux = self.hidden(idx_BS)
        logits_BSV = self.head(self.norm(h_BSD))
        if self.mtp is None:
            return logits_BSV, aux, []
        return logits_BSV, aux, self.mtp(h_BSD, idx_BS, self.embed, self.head,
                                         self.rope_cos, self.rope_sin)

    def hidden(self, idx_BS: torch.Tensor):
        """token ids (B, S) -> the last block's output (B, S, D) before the final norm, aux."""
        x = self.embed(idx_BS)
        aux_sum: dict[str, torch.Tensor] = {}
        for block in self.blocks:
            x, aux = block(x, self.rope_cos, self.rope_sin, idx_BS)
            for k, v in aux.items():
                aux_sum[k] = aux_sum.get(k, 0.0) + v
        n = max(len(self.moe_layers), 1)
        return x, {k: v / n for k, v in aux_sum.items()}
