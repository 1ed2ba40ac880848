"""Top-p (dynamic-K) routing: a token takes experts in order of probability until their
cumulative probability reaches p ("dynamic routing", Huang et al. 2024, "Harder Tasks Need
More Experts"), capped at max_k. `model.moe.top_k` is ignored.
RouterOutput: K_out = max_k (or E) slots, unused slots are -1 with gate 0; gates are the
kept probabilities renormalised to sum to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


@dataclass
class TopPConfig(RouterConfig):
    name: str = "top_p"
    p: float = 0.5  # cumulative probability to reach
    max_k: int = 0  # at most this many experts per token; 0 = all E


@ROUTERS.register("top_p", TopPConfig)
class TopPRouter(Router):
    def __init__(self, cfg: TopPConfig, d_model: int, n_experts: int, top_k: int):
        super().__init__(cfg, d_model, n_experts, top_k)
        if not 0 < cfg.p <= 1:
            raise ConfigError("model.moe.router.p", cfg.p, "0 < p <= 1")
        if not 0 <= cfg.max_k <= n_experts:
            raise ConfigError("model.moe.router.max_k", cfg.max_k, f"0..{n_experts} (0 = all)")
        self.k_out = cfg.max_k or n_experts

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        probs_TE = logits_TE.softmax(dim=-1)
        sorted_TK, order_TK = probs_TE.topk(self.k_out, dim=-1)  # descending
        # mass of the earlier slots; a matmul, since float cumsum has no deterministic CUDA kernel
        earlier_KK = torch.ones(self.k_out, self.k_out, device=probs_TE.device).triu(diagonal=1)
        before_TK = sorted_TK.detach() @ earlier_KK
        keep_TK = before_TK < self.cfg.p  # keeps the expert that crosses p; slot 0 always kept
        ids_TK = torch.where(keep_TK, order_TK, -1)
        kept_TK = torch.where(keep_TK, sorted_TK, 0.0)
        gates_TK = kept_TK / kept_TK.sum(dim=-1, keepdim=True)
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=probs_TE)
