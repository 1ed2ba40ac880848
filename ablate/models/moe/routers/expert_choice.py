"""Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing").

    S = softmax(u) over experts (T, E);  each expert e keeps its top-C tokens by S[:, e],
    C = ceil(T * capacity_factor / E)   (the paper's k = n*c/e; c=top_k matches the compute
    of top-K token choice). A token may be taken by 0..E experts.
RouterOutput contract: K_out = E slots per token, slot e holds expert e if e took the
token, else -1 (the expert kernel skips -1), gate = S[t, e] (the paper's G).
Non-causal: whether expert e takes token t depends on every other token of the batch,
later positions included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


@dataclass
class ExpertChoiceConfig(RouterConfig):
    name: str = "expert_choice"
    capacity_factor: float = 1.0  # c: average experts per token


@ROUTERS.register("expert_choice", ExpertChoiceConfig)
class ExpertChoiceRouter(Router):
    causal = False

    def __init__(self, cfg: ExpertChoiceConfig, d_model: int, n_experts: int, top_k: int):
        super().__init__(cfg, d_model, n_experts, top_k)
        if not cfg.capacity_factor > 0:
            raise ConfigError("model.moe.router.capacity_factor", cfg.capacity_factor,
                              "a number > 0")

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        T, E = logits_TE.shape
        C = min(T, math.ceil(T * self.cfg.capacity_factor / E))
        probs_TE = logits_TE.softmax(dim=-1)
        tok_EC = probs_TE.detach().t().topk(C, dim=-1).indices  # (E, C) tokens each expert takes
        took_ET = torch.zeros(E, T, dtype=torch.bool, device=logits_TE.device)
        took_TE = took_ET.scatter_(1, tok_EC, True).t()  # (T, E)
        experts_TE = torch.arange(E, device=logits_TE.device).expand(T, E)
        ids_TE = torch.where(took_TE, experts_TE, -1)
        gates_TE = torch.where(took_TE, probs_TE, 0.0)
        return RouterOutput(ids_TE, gates_TE, logits_TE=logits_TE, probs_TE=probs_TE)
