"""The affinity times the number of experts: g_k = E * s_{i_k} (no renormalisation).

A near-uniform router (p ~ 1/E at init) then gives each token about the dense FFN's scale,
where the raw probability (Switch's gate, `prob` without `normalize`) starts E times
smaller; the gradient is the probability's, scaled, so the router learns from the LM loss.
It is the routed-scaling idea of DeepSeek-V3 (`scale`) with the factor set to E.
What `auto` uses with one expert per token: measured best of the raw probability, the
straight-through gate and this (README, "Which top-1 gate").
"""

from __future__ import annotations

import torch

from ablate.models.moe.routers.parts import Gate, kept_scores
from ablate.registry import GATES


@GATES.register("scaled_prob")
class ScaledProb(Gate):
    def __call__(self, s_TE: torch.Tensor, ids_TK: torch.Tensor) -> torch.Tensor:
        g_TK, _ = kept_scores(s_TE, ids_TK)
        return g_TK * s_TE.shape[-1]
