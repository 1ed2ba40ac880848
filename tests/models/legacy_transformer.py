"""The model as it was before MLA and MTP (ablate/models/{attention,transformer}.py at
commit 4a7dca6, their last change; copied verbatim below the imports): the frozen reference that
`model.attention=mha`, `model.mtp.depth=0` must equal bit for bit (tests/models/test_mtp.py).
Do not edit: a change here would hide a change in the model it pins."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config.derived import moe_layer_ids
from ablate.config.schema import ModelConfig
from ablate.models.mlp import SwiGLU
from ablate.models.moe.layer import MoELayer


def init_normal_(owner: nn.Module, p: torch.Tensor, std: float) -> None:
    """expert_parallel.init_normal_ of 4a7dca6 on one process (that module has moved out of
    ablate/models: ablate/parallel/)."""
    nn.init.normal_(p, std=std)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in float32: bf16 mean-of-squares loses too many bits
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rope_cache(seq_len: int, d_head: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: (S, d_head/2)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, d_head, 2, dtype=torch.float32) / d_head))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, S, Dh); rotate pairs (x[2i], x[2i+1]) by position-dependent angles."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, H, S, Dh/2) each
    cos, sin = cos[: x.shape[-2]], sin[: x.shape[-2]]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, H, S, Dh/2, 2)
    return out.flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, S, D)
        q, k, v = (t.view(B, S, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, H, S, Dh)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, S, Dh)
        return self.proj(y.transpose(1, 2).reshape(B, S, D))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, moe: bool):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
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
        cos, sin = rope_cache(max_seq_len, cfg.d_model // cfg.n_heads, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.n_layers)  # residual projections (GPT-2)
        for name, p in self.named_parameters():
            if name.endswith("router.weight"):
                continue  # routers own their init (RouterConfig.init)
            if p.dim() >= 2:
                last = name.endswith(("proj.weight", "w2.weight", "experts.w2"))
                owner = self.get_submodule(name.rpartition(".")[0])
                init_normal_(owner, p, std=out_std if last else std)  # EP shards: their slice

    @property
    def moe_layers(self) -> list[MoELayer]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoELayer)]

    def forward(self, idx_BS: torch.Tensor):
        """token ids (B, S) -> logits (B, S, V), {aux name: mean over MoE layers}."""
        x = self.embed(idx_BS)
        aux_sum: dict[str, torch.Tensor] = {}
        for block in self.blocks:
            x, aux = block(x, self.rope_cos, self.rope_sin, idx_BS)
            for k, v in aux.items():
                aux_sum[k] = aux_sum.get(k, 0.0) + v
        n = max(len(self.moe_layers), 1)
        logits = self.head(self.norm(x))
        return logits, {k: v / n for k, v in aux_sum.items()}
