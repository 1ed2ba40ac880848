"""Multi-token prediction (MTP): DeepSeek-V3 §2.2 (arXiv 2412.19437), eqs. (21)-(25).

D sequential modules after the main model. Module k (1..D), at position i, joins the
previous depth's representation h^{k-1}_i (the main model's last hidden state, before its
final norm, for k = 1) with the embedding of token t_{i+k}, runs one transformer block and
predicts token t_{i+k+1} through the output head, which is the main model's (so is the
embedding: V3 shares both):

    h'^k_i = M_k [RMSNorm(h^{k-1}_i); RMSNorm(Emb(t_{i+k}))]          (21)
    h^k_{1:T-k} = TRM_k(h'^k_{1:T-k})                                 (22)
    P^k_{i+k+1} = OutHead(h^k_i)                                      (23)
    L^k = CrossEntropy(P^k, t_{2+k:T+1})                               (24)
    L_MTP = lambda / D * sum_k L^k                                     (25)

Block ends. A training block is x = t_0..t_{S-1} with targets y = t_1..t_S. Depth k pairs
position i with target t_{i+k+1} = y_{i+k}: it exists for i = 0..S-1-k only, so depth k
keeps S-k positions and drops the last k, as V3's sequence shrinks by one per depth. Its
inputs are x[:, k:] and its targets y[:, k:]: nothing is read beyond the block.

Deviations, on purpose. The module's transformer block is dense (SwiGLU of width d_ff) even
in an MoE model, where V3's is an MoE block like its main layers: routing statistics,
balancing, upcycling and expert parallelism then concern the main model's routers only.
h^0 is the main model's residual stream before its final RMSNorm (the paper says "the
representation given by the main model"); the module's h_norm normalises it, so the choice
differs from feeding the normed state only by the final norm's per-channel gain.
Not a deviation: each module ends with its own RMSNorm before the shared head (V3's released
weights: the `shared_head.norm` of each MTP layer), as the main model's final norm does. L^k here is
the mean over the S-k predicted positions (eq. 24 writes 1/T before a sum of T-k terms), so
that `train/mtp/d{k}` reads as a per-token cross-entropy beside `train/lm_loss`.

Legend: B batch, S block positions, P = S - k positions at depth k, D d_model, V vocab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.models.attention import RMSNorm


class MTPModule(nn.Module):
    """One depth: (h^{k-1} (B, P, D), Emb(t_{i+k}) (B, P, D)) -> h^k (B, P, D), eqs. 21-22.
    `block`: a transformer block `(x, cos, sin, token_ids) -> (x, aux)`."""

    def __init__(self, d_model: int, norm_eps: float, block: nn.Module):
        super().__init__()
        self.h_norm = RMSNorm(d_model, norm_eps)
        self.e_norm = RMSNorm(d_model, norm_eps)
        self.merge = nn.Linear(2 * d_model, d_model, bias=False)  # M_k: 2D -> D
        self.block = block
        self.out_norm = RMSNorm(d_model, norm_eps)  # before the shared head

    def forward(self, h_BPD, e_BPD, cos, sin, ids_BP) -> torch.Tensor:
        x_BPD = self.merge(torch.cat([self.h_norm(h_BPD), self.e_norm(e_BPD)], dim=-1))
        x_BPD, _ = self.block(x_BPD, cos, sin, ids_BP)
        return x_BPD


class MTP(nn.Module):
    """The D modules, run in sequence on the main model's last hidden state."""

    def __init__(self, d_model: int, norm_eps: float, blocks: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(MTPModule(d_model, norm_eps, b) for b in blocks)

    def forward(self, h_BSD: torch.Tensor, idx_BS: torch.Tensor, embed: nn.Module,
                head: nn.Module, cos: torch.Tensor, sin: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, S-k, V) for k = 1..D: position i of depth k predicts t_{i+k+1}."""
        S = idx_BS.shape[1]
        logits = []
        for k, layer in enumerate(self.layers, start=1):
            P = S - k  # the last k positions have no target in the block: dropped
            ids_BP = idx_BS[:, k:]  # t_{i+k} for i = 0..P-1
            h_BSD = layer(h_BSD[:, :P], embed(ids_BP), cos, sin, ids_BP)  # h^k, (B, P, D)
            logits.append(head(layer.out_norm(h_BSD)))  # eq. 23, (B, P, V)
        return logits


def mtp_losses(logits: list[torch.Tensor], y_BS: torch.Tensor) -> list[torch.Tensor]:
    """L^k (eq. 24) for k = 1..D: depth k's logits (B, S-k, V) against y[:, k:] = t_{i+k+1}."""
    out = []
    for k, logits_BPV in enumerate(logits, start=1):
        y_BP = y_BS[:, k:]
        assert logits_BPV.shape[:2] == y_BP.shape, (logits_BPV.shape, y_BP.shape)
        out.append(F.cross_entropy(logits_BPV.float().flatten(0, 1), y_BP.flatten()))
    return out
