"""Soft MoE (Puigcerver et al. 2023, "From Sparse to Soft Mixtures of Experts"), one slot
per expert.

    logits = X Phi              (T, E)   Phi = the router weight, transposed
    D = softmax over tokens     (T, E)   dispatch: slot e is a convex mix of the tokens
    slots = D^T X               (E, D)
    C = softmax over slots      (T, E)   combine: token t mixes the slot outputs
    Y = C f(slots)              (T, D)   f_e applied to slot e
Every slot reads every token of the sequence, so the layer is non-causal. Token-choice
dispatch (ids/gates) cannot express D, hence `dense_mixture = True`: the layer must call
`soft_moe_forward(self.experts, x, route.logits_TE)` instead of dispatching on ids.
TODO(lead): wire that in `ablate/models/moe/layer.py` (MoELayer.forward). Until then the
RouterOutput below (every expert, gates = C) runs as a dense, softly gated, causal mixture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


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


@dataclass
class SoftConfig(RouterConfig):
    name: str = "soft"


@ROUTERS.register("soft", SoftConfig)
class SoftRouter(Router):
    causal = False
    dense_mixture = True

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        T, E = logits_TE.shape
        combine_TE = logits_TE.softmax(dim=-1)
        ids_TE = torch.arange(E, device=logits_TE.device).expand(T, E).contiguous()
        return RouterOutput(ids_TE, combine_TE, logits_TE=logits_TE, probs_TE=combine_TE)
