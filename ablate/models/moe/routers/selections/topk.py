"""Token-choice top-K: each token takes the K experts with the highest selection score
(Shazeer et al. 2017; Switch K=1; GShard, Mixtral, OLMoE, Qwen, DeepSeek K>1)."""

from __future__ import annotations

import torch

from ablate.models.moe.routers.base import Selection
from ablate.registry import SELECTIONS


@SELECTIONS.register("topk")
class TopK(Selection):
    def forward(self, sel_TE: torch.Tensor, **ctx: torch.Tensor | None) -> torch.Tensor:
        return sel_TE.topk(self.top_k, dim=-1).indices  # (T, K), best first
