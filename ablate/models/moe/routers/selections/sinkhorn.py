"""BASE layers (Lewis et al. 2021) with Sinkhorn assignment (S-BASE, Clark et al. 2022).

Training: a balanced assignment of the batch's T tokens to the E experts. Instead of the
exact auction algorithm, a few Sinkhorn iterations (Clark et al. 2022 §4) turn exp(u) into
a matrix whose rows sum to 1 and columns to T/E, then each token takes its argmax
(balanced up to the Sinkhorn error). Evaluation: greedy top-1 of the scores (Lewis et al.
§2.3). One expert per token: top_k must be 1. Non-causal while training, where a token's
expert depends on the whole batch (later positions included); causal at eval.
"""

from __future__ import annotations

import math

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Selection
from ablate.registry import SELECTIONS


@torch.no_grad()
def sinkhorn_log(logits_TE: torch.Tensor, n_iters: int) -> torch.Tensor:
    """(T, E) -> (T, E) log of the balanced plan: rows sum to 1, columns to T/E (log domain)."""
    T, E = logits_TE.shape
    log_p = logits_TE.float()
    for _ in range(n_iters):
        log_p = log_p - log_p.logsumexp(dim=0, keepdim=True) + math.log(T / E)  # columns
        log_p = log_p - log_p.logsumexp(dim=1, keepdim=True)  # rows
    return log_p


@SELECTIONS.register("sinkhorn")
class Sinkhorn(Selection):
    options = ("sinkhorn_iters",)
    causal = False

    def __init__(self, cfg, n_experts: int, top_k: int):
        super().__init__(cfg, n_experts, top_k)
        if top_k != 1:
            raise ConfigError("model.moe.top_k", top_k, "1 (BASE layers send each token to one "
                              "expert; with granularity m, top_k*m must be 1)")
        if cfg.sinkhorn_iters < 0:
            raise ConfigError("model.moe.router.sinkhorn_iters", cfg.sinkhorn_iters,
                              "an integer >= 0")

    def forward(self, sel_TE: torch.Tensor, **ctx: torch.Tensor | None) -> torch.Tensor:
        if not self.training:
            return sel_TE.argmax(dim=-1, keepdim=True)
        logits_TE = ctx["logits_TE"].detach()  # the plan is made in the log domain of exp(u)
        return sinkhorn_log(logits_TE, self.cfg.sinkhorn_iters).argmax(dim=-1, keepdim=True)
