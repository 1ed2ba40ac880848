"""Top-p (dynamic-K): a token takes experts in order of score until their cumulative
probability reaches p ("dynamic routing", Huang et al. 2024, "Harder Tasks Need More
Experts"), capped at max_k. `model.moe.top_k` is ignored.
Output: k_out = max_k (or E) slots, unused slots are -1. The scores must be a
distribution over the experts (score: softmax).
"""

from __future__ import annotations

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Selection
from ablate.registry import SELECTIONS


@SELECTIONS.register("top_p")
class TopP(Selection):
    options = ("p", "max_k")
    varies_k = True
    needs_distribution = True

    def __init__(self, cfg, n_experts: int, top_k: int):
        super().__init__(cfg, n_experts, top_k)
        if not 0 < cfg.p <= 1:
            raise ConfigError("model.moe.router.p", cfg.p, "0 < p <= 1")
        if not 0 <= cfg.max_k <= n_experts:
            raise ConfigError("model.moe.router.max_k", cfg.max_k, f"0..{n_experts} (0 = all)")
        self.k_out = cfg.max_k or n_experts

    def forward(self, sel_TE: torch.Tensor, **ctx: torch.Tensor | None) -> torch.Tensor:
        sorted_TK, order_TK = sel_TE.topk(self.k_out, dim=-1)  # descending
        # mass of the earlier slots; a matmul: float cumsum has no deterministic CUDA kernel
        earlier_KK = torch.ones(self.k_out, self.k_out, device=sel_TE.device).triu(diagonal=1)
        keep_TK = (sorted_TK @ earlier_KK) < self.cfg.p  # keeps the expert that crosses p
        return torch.where(keep_TK, order_TK, -1)
