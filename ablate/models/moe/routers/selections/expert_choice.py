"""Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing").

Each expert e keeps its top-C tokens by score, C = ceil(T * experts_per_token / E) (the
paper's k = n*c/e; c = top_k matches the compute of top-K token choice). A token may be
taken by 0..E experts. Output: k_out = E slots per token, slot e holds expert e if e took
the token, else -1. Non-causal: whether expert e takes token t depends on every other
token of the batch, later positions included. With `eval_token_choice`, evaluation routes
each token to its own top-round(c) experts by the same scores: causal, so the validation
loss measures the model without the leak (training still sees it).
"""

from __future__ import annotations

import math

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Selection
from ablate.registry import SELECTIONS


@SELECTIONS.register("expert_choice")
class ExpertChoice(Selection):
    options = ("experts_per_token", "eval_token_choice")
    causal = False
    varies_k = True

    def __init__(self, cfg, n_experts: int, top_k: int):
        super().__init__(cfg, n_experts, top_k)
        if not cfg.experts_per_token > 0:
            raise ConfigError("model.moe.router.experts_per_token", cfg.experts_per_token,
                              "a number > 0")

    def forward(self, sel_TE: torch.Tensor, **ctx: torch.Tensor | None) -> torch.Tensor:
        T, E = sel_TE.shape
        if not self.training and self.cfg.eval_token_choice:  # leak-free evaluation
            k = max(1, min(E, round(self.cfg.experts_per_token)))
            top_TK = sel_TE.topk(k, dim=-1).indices
            took_TE = torch.zeros(T, E, dtype=torch.bool,
                                  device=sel_TE.device).scatter_(1, top_TK, True)
            return torch.where(took_TE, torch.arange(E, device=sel_TE.device).expand(T, E), -1)
        C = min(T, math.ceil(T * self.cfg.experts_per_token / E))
        tok_EC = sel_TE.t().topk(C, dim=-1).indices  # (E, C) the tokens each expert takes
        took_ET = torch.zeros(E, T, dtype=torch.bool, device=sel_TE.device)
        took_TE = took_ET.scatter_(1, tok_EC, True).t()
        experts_TE = torch.arange(E, device=sel_TE.device).expand(T, E)
        return torch.where(took_TE, experts_TE, -1)
