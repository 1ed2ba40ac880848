"""Device-limited (group-limited) routing (DeepSeek-V2 arXiv 2405.04434 §2.1.3; V3 §2.1.2).

The E experts are split into G = n_groups contiguous groups ("devices"). Each token keeps
the top-M groups (M = topk_groups) by a group score, then the top-K experts inside them,
so its all-to-all traffic touches at most M devices.
    group score  max:     max_{j in g} s_j           (V2: the device of the best expert)
                 top2sum: sum of the 2 best s_j in g (V3)
    s = softmax(u) (V2) or sigmoid(u) (V3); gate = s_i, renormalised over K if `normalize`.
Legend: T tokens, E experts, G groups, M kept groups, K experts per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS

KEY = "model.moe.router."


@dataclass
class GroupLimitedConfig(RouterConfig):
    name: str = "group_limited"
    n_groups: int = 4  # G: devices; must divide the number of routed experts
    topk_groups: int = 2  # M: groups a token may reach
    score: str = "softmax"  # softmax (V2) | sigmoid (V3)
    group_score: str = "max"  # max (V2) | top2sum (V3)
    normalize: bool = True  # renormalise the K gates to sum to 1 (V3; V2 used raw softmax)


@ROUTERS.register("group_limited", GroupLimitedConfig)
class GroupLimitedRouter(Router):
    def __init__(self, cfg: GroupLimitedConfig, d_model: int, n_experts: int, top_k: int):
        super().__init__(cfg, d_model, n_experts, top_k)
        G, M = cfg.n_groups, cfg.topk_groups
        if G < 1 or n_experts % G:
            raise ConfigError(KEY + "n_groups", G, f"a divisor of the experts ({n_experts})")
        if not 1 <= M <= G:
            raise ConfigError(KEY + "topk_groups", M, f"1..model.moe.router.n_groups ({G})")
        if top_k > M * (n_experts // G):
            raise ConfigError(KEY + "topk_groups", M, f"enough groups to hold top_k={top_k} "
                              f"experts ({n_experts // G} per group)",
                              "too few experts in the kept groups")
        if cfg.score not in ("softmax", "sigmoid"):
            raise ConfigError(KEY + "score", cfg.score, "softmax, sigmoid")
        if cfg.group_score not in ("max", "top2sum"):
            raise ConfigError(KEY + "group_score", cfg.group_score, "max, top2sum")
        if cfg.group_score == "top2sum" and n_experts // G < 2:
            raise ConfigError(KEY + "group_score", cfg.group_score, "max (groups of one expert)")

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        T, E = logits_TE.shape
        G, M = self.cfg.n_groups, self.cfg.topk_groups
        s_TE = logits_TE.softmax(-1) if self.cfg.score == "softmax" else torch.sigmoid(logits_TE)
        s_TGe = s_TE.detach().view(T, G, E // G)  # (T, G, E/G): contiguous groups
        if self.cfg.group_score == "max":
            g_TG = s_TGe.amax(dim=-1)
        else:
            g_TG = s_TGe.topk(2, dim=-1).values.sum(dim=-1)
        keep_TG = torch.zeros(T, G, dtype=torch.bool, device=s_TE.device)
        keep_TG.scatter_(1, g_TG.topk(M, dim=-1).indices, True)
        keep_TE = keep_TG.repeat_interleave(E // G, dim=1)  # (T, G) -> (T, E)
        # -inf outside the kept groups: K <= M * E/G (checked in __init__) so never selected
        _, ids_TK = s_TE.detach().masked_fill(~keep_TE, float("-inf")).topk(self.top_k, dim=-1)
        gates_TK = s_TE.gather(-1, ids_TK)
        if self.cfg.normalize:
            gates_TK = gates_TK / gates_TK.sum(dim=-1, keepdim=True)
        probs_TE = s_TE if self.cfg.score == "softmax" else s_TE / s_TE.sum(-1, keepdim=True)
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=probs_TE,
                            n_groups=G, topk_groups=M)
