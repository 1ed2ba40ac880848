"""Multi-head latent attention (MLA): DeepSeek-V2 §2.1 (arXiv 2405.04434), eqs. (9)-(19);
the same equations are DeepSeek-V3's (1)-(11).

MHA caches a key and a value per head: 2 * H * d_h floats per token and layer. MLA caches
one latent instead (eq. 9), from which every head's key and value are rebuilt by an
up-projection (eqs. 10-11); V2 §3.1.2 normalises the latent with an RMSNorm (and the query
latent, when queries are compressed too, eqs. 12-13). RoPE cannot act on keys rebuilt from
the latent (the rotation sits between W^UK and the query, so W^UK could no longer be
absorbed into W^UQ at inference), so position enters through a decoupled part: a per-head
query part from the query latent (eq. 14) and ONE key part shared by all heads, computed
from the hidden state, not from the latent (eq. 15). Each head's query and key are the
concatenation of the two parts (eqs. 16-17), attention is scaled by 1/sqrt(d_h + d_h^R)
(eq. 18) and the heads' outputs are projected back (eq. 19). The cache is c^KV and the
rotated k^R: d_c + d_h^R floats per token and layer, whatever the number of heads.

Training runs the explicit form (keys and values materialised per head); the absorbed form
only changes inference cost, not the function.

Legend: B batch, S query positions, T key positions (T = S in training; the queries are the
last S of T), D d_model, H heads, C kv_rank (d_c), Q q_rank (d_c'), N head_dim (d_h, the
non-RoPE query/key part), R rope_dim (d_h^R), V v_head_dim, K = N + R (query/key width).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config.schema import MLAConfig
from ablate.models.attention import RMSNorm, apply_rope


@dataclass(frozen=True)
class MLADims:
    n_heads: int  # H
    kv_rank: int  # C = d_c
    q_rank: int  # Q = d_c' (0: no query latent)
    head_dim: int  # N = d_h
    rope_dim: int  # R = d_h^R
    v_head_dim: int  # V

    @property
    def qk_dim(self) -> int:  # K: one head's query/key width
        return self.head_dim + self.rope_dim

    @property
    def cache_floats(self) -> int:
        """Floats cached per token and layer: the latent c^KV and the shared k^R."""
        return self.kv_rank + self.rope_dim

    def n_params(self, d_model: int) -> int:
        """Parameters of one MLA module (its RMSNorm weights included)."""
        H, C, Q, R = self.n_heads, self.kv_rank, self.q_rank, self.rope_dim
        q = d_model * H * self.qk_dim if not Q else d_model * Q + Q + Q * H * self.qk_dim
        kv = d_model * (C + R) + C + C * H * (self.head_dim + self.v_head_dim)
        return q + kv + H * self.v_head_dim * d_model


def mla_dims(cfg: MLAConfig, d_model: int, n_heads: int) -> MLADims:
    head_dim = cfg.head_dim or d_model // n_heads
    return MLADims(n_heads, cfg.kv_rank, cfg.q_rank, head_dim, cfg.rope_dim,
                   cfg.v_head_dim or head_dim)


class MultiHeadLatentAttention(nn.Module):
    """Causal MLA: x (B, S, D) -> (B, S, D). `cos`, `sin`: a RoPE cache of width R / 2."""

    def __init__(self, cfg: MLAConfig, d_model: int, n_heads: int, dropout: float = 0.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.dims = d = mla_dims(cfg, d_model, n_heads)
        self.dropout = dropout
        H = d.n_heads
        if d.q_rank:  # W^DQ, its RMSNorm, then W^UQ and W^QR in one matrix (eqs. 12-14)
            self.wq_a = nn.Linear(d_model, d.q_rank, bias=False)
            self.q_norm = RMSNorm(d.q_rank, norm_eps)
            self.wq_b = nn.Linear(d.q_rank, H * d.qk_dim, bias=False)
        else:  # queries straight from x (DeepSeek-V2-Lite)
            self.wq = nn.Linear(d_model, H * d.qk_dim, bias=False)
        # W^DKV and W^KR (9, 15)
        self.wkv_a = nn.Linear(d_model, d.kv_rank + d.rope_dim, bias=False)
        self.kv_norm = RMSNorm(d.kv_rank, norm_eps)
        self.wkv_b = nn.Linear(d.kv_rank, H * (d.head_dim + d.v_head_dim), bias=False)  # W^UK, W^UV
        self.proj = nn.Linear(H * d.v_head_dim, d_model, bias=False)  # W^O (eq. 19)

    def forward(self, x_BSD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        c_BSC, kr_BSR = self.latent(x_BSD, cos, sin)
        return self.attend(x_BSD, c_BSC, kr_BSR, cos, sin)

    def latent(self, x_BTD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """What an inference cache holds, for positions 0..T-1: c^KV (B, T, C) after its
        RMSNorm (eq. 9) and the rotated shared key part k^R (B, T, R) (eq. 15)."""
        d = self.dims
        c_BTC, kr_BTR = self.wkv_a(x_BTD).split([d.kv_rank, d.rope_dim], dim=-1)
        kr_BTR = apply_rope(kr_BTR.unsqueeze(1), cos, sin).squeeze(1)  # one "head" shared by all
        return self.kv_norm(c_BTC), kr_BTR

    def attend(self, x_BSD: torch.Tensor, c_BTC: torch.Tensor, kr_BTR: torch.Tensor,
               cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Queries of the last S of T positions (hidden states x) against keys and values
        rebuilt from the cache alone: (B, S, D)."""
        d, H = self.dims, self.dims.n_heads
        B, S, _ = x_BSD.shape
        T = c_BTC.shape[1]
        q_BSX = self.wq_b(self.q_norm(self.wq_a(x_BSD))) if d.q_rank else self.wq(x_BSD)
        q_BHSK = q_BSX.view(B, S, H, d.qk_dim).transpose(1, 2)
        qc_BHSN, qr_BHSR = q_BHSK.split([d.head_dim, d.rope_dim], dim=-1)
        qr_BHSR = apply_rope(qr_BHSR, cos[T - S:T], sin[T - S:T])  # the queries' own positions
        kv_BHTX = self.wkv_b(c_BTC).view(B, T, H, d.head_dim + d.v_head_dim).transpose(1, 2)
        kc_BHTN, v_BHTV = kv_BHTX.split([d.head_dim, d.v_head_dim], dim=-1)  # eqs. 10-11
        q_BHSK = torch.cat([qc_BHSN, qr_BHSR], dim=-1)  # eq. 16
        kr_BHTR = kr_BTR.unsqueeze(1).expand(B, H, T, d.rope_dim)  # the same k^R for every head
        k_BHTK = torch.cat([kc_BHTN, kr_BHTR], dim=-1)  # eq. 17
        p = self.dropout if self.training else 0.0
        if S == T:  # SDPA's own causal mask: the training path, same kernel as MHA
            y_BHSV = F.scaled_dot_product_attention(q_BHSK, k_BHTK, v_BHTV,
                                                    dropout_p=p, is_causal=True)
        else:  # is_causal aligns top-left; queries at T-S.. need the bottom-right triangle
            mask_ST = torch.ones(S, T, dtype=torch.bool, device=x_BSD.device).tril(T - S)
            y_BHSV = F.scaled_dot_product_attention(q_BHSK, k_BHTK, v_BHTV,
                                                    attn_mask=mask_ST, dropout_p=p)
        # SDPA's default scale is 1/sqrt(K) = 1/sqrt(d_h + d_h^R), eq. 18's
        return self.proj(y_BHSV.transpose(1, 2).reshape(B, S, H * d.v_head_dim))  # eq. 19
