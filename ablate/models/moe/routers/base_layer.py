"""BASE layers (Lewis et al. 2021) with Sinkhorn assignment (S-BASE, Clark et al. 2022).

Training: a balanced assignment of the batch's T tokens to the E experts. Instead of the
exact auction algorithm, a few Sinkhorn iterations (Clark et al. 2022 §4) turn exp(u) into
a matrix whose rows sum to 1 and columns to T/E, then each token takes its argmax
(balanced up to the Sinkhorn error). Evaluation: greedy top-1 of u (Lewis et al. §2.3).
Gate: sigmoid(u_t,e) of the chosen expert (Lewis et al. eq. 1: h + sigma(h.w_e) f_e(h)).
One expert per token: `model.moe.top_k` must be 1. Non-causal while training, where a
token's expert depends on the whole batch (later positions included); causal at eval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


@dataclass
class BaseLayerConfig(RouterConfig):
    name: str = "base"
    sinkhorn_iters: int = 8


@torch.no_grad()
def sinkhorn_log(logits_TE: torch.Tensor, n_iters: int) -> torch.Tensor:
    """(T, E) -> (T, E) log of the balanced plan: rows sum to 1, columns to T/E (log domain)."""
    T, E = logits_TE.shape
    log_p = logits_TE.float()
    for _ in range(n_iters):
        log_p = log_p - log_p.logsumexp(dim=0, keepdim=True) + math.log(T / E)  # columns
        log_p = log_p - log_p.logsumexp(dim=1, keepdim=True)  # rows
    return log_p


@ROUTERS.register("base", BaseLayerConfig)
class BaseLayerRouter(Router):
    causal = False

    def __init__(self, cfg: BaseLayerConfig, d_model: int, n_experts: int, top_k: int):
        super().__init__(cfg, d_model, n_experts, top_k)
        if top_k != 1:
            raise ConfigError("model.moe.top_k", top_k, "1 (BASE layers send each token to one "
                              "expert; with granularity m, top_k*m must be 1)")
        if cfg.sinkhorn_iters < 0:
            raise ConfigError("model.moe.router.sinkhorn_iters", cfg.sinkhorn_iters,
                              "an integer >= 0")

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        if self.training:
            ids_TK = sinkhorn_log(logits_TE, self.cfg.sinkhorn_iters).argmax(dim=-1, keepdim=True)
        else:
            ids_TK = logits_TE.detach().argmax(dim=-1, keepdim=True)
        gates_TK = torch.sigmoid(logits_TE.gather(-1, ids_TK))
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=logits_TE.softmax(-1))
