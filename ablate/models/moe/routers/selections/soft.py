"""Soft MoE (Puigcerver et al. 2023, "From Sparse to Soft Mixtures of Experts"), one slot
per expert.

    logits = X Phi              (T, E)   Phi = the router weight, transposed
    D = softmax over tokens     (T, E)   dispatch: slot e is a convex mix of the tokens
    slots = D^T X               (E, D)
    C = softmax over slots      (T, E)   combine: token t mixes the slot outputs
    Y = C f(slots)              (T, D)   f_e applied to slot e
Every slot reads every token of the sequence, so the layer is non-causal and the router
mixes densely (`mix`) instead of dispatching each token on ids/gates. The ids/gates it
reports (every expert, gates = C) feed the balance losses and the statistics.
"""

from __future__ import annotations

import torch

from ablate.models.moe.routers.base import Selection
from ablate.registry import SELECTIONS


def soft_moe_mix(x_TD: torch.Tensor, logits_TE: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., T, D), logits (..., T, E) -> slots (..., E, D), combine (..., T, E).

    Leading dims are independent mixes: pass (B, S, D) / (B, S, E) to mix within each
    sequence (the paper's setting) rather than across the whole flattened batch."""
    dispatch_TE = logits_TE.float().softmax(dim=-2)  # over tokens: each slot mixes tokens
    combine_TE = logits_TE.float().softmax(dim=-1)  # over slots: each token mixes slots
    slots_ED = dispatch_TE.transpose(-1, -2).to(x_TD.dtype) @ x_TD
    return slots_ED, combine_TE


def soft_moe_forward(experts, x_BSD: torch.Tensor, logits_BSE: torch.Tensor) -> torch.Tensor:
    """The whole Soft MoE layer on (B, S, D) with a `RoutedExperts` (slot e -> expert e)."""
    B, S, D = x_BSD.shape
    E = logits_BSE.shape[-1]
    slots_BED, combine_BSE = soft_moe_mix(x_BSD, logits_BSE)
    ids_NK = torch.arange(E, device=x_BSD.device).repeat(B).unsqueeze(-1)  # (B*E, 1)
    ones_NK = torch.ones(B * E, 1, dtype=torch.float32, device=x_BSD.device)
    out_BED = experts(slots_BED.reshape(B * E, D), ids_NK, ones_NK).view(B, E, D)
    return combine_BSE.to(out_BED.dtype) @ out_BED


@SELECTIONS.register("soft")
class Soft(Selection):
    causal = False
    dense_mixture = True
    varies_k = True  # every expert, gated densely

    def forward(self, sel_TE: torch.Tensor, **ctx: torch.Tensor | None) -> torch.Tensor:
        T, E = sel_TE.shape
        return torch.arange(E, device=sel_TE.device).expand(T, E).contiguous()

    def mix(self, experts, x_BSD: torch.Tensor, logits_TE: torch.Tensor) -> torch.Tensor:
        B, S, D = x_BSD.shape
        return soft_moe_forward(experts, x_BSD, logits_TE.view(B, S, -1)).reshape(B * S, D)
