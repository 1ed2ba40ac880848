"""Device-limited (group-limited) top-K (DeepSeek-V2 arXiv 2405.04434 §2.1.3; V3 §2.1.2).

The E experts are split into G = n_groups contiguous groups ("devices"). Each token keeps
the top-M groups (M = topk_groups) by a group score of its selection scores, then the
top-K experts inside them, so its all-to-all traffic touches at most M devices.
    group score  max:     max_{j in g} sel_j           (V2: the device of the best expert)
                 top2sum: sum of the 2 best sel_j in g (V3; sel = s + bias there)
Legend: T tokens, E experts, G groups, M kept groups, K experts per token.
"""

from __future__ import annotations

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Selection
from ablate.registry import SELECTIONS

KEY = "model.moe.router."


@SELECTIONS.register("group_limited")
class GroupLimited(Selection):
    options = ("n_groups", "topk_groups", "group_score")

    def __init__(self, cfg, n_experts: int, top_k: int):
        super().__init__(cfg, n_experts, top_k)
        G, M = cfg.n_groups, cfg.topk_groups
        if G < 1 or n_experts % G:
            raise ConfigError(KEY + "n_groups", G, f"a divisor of the experts ({n_experts})")
        if not 1 <= M <= G:
            raise ConfigError(KEY + "topk_groups", M, f"1..model.moe.router.n_groups ({G})")
        if top_k > M * (n_experts // G):
            raise ConfigError(KEY + "topk_groups", M, f"enough groups to hold top_k={top_k} "
                              f"experts ({n_experts // G} per group)",
                              "too few experts in the kept groups")
        if cfg.group_score not in ("max", "top2sum"):
            raise ConfigError(KEY + "group_score", cfg.group_score, "max, top2sum")
        if cfg.group_score == "top2sum" and n_experts // G < 2:
            raise ConfigError(KEY + "group_score", cfg.group_score, "max (groups of one expert)")

    @property
    def device_groups(self) -> tuple[int, int]:
        return self.cfg.n_groups, self.cfg.topk_groups

    def forward(self, sel_TE: torch.Tensor, **ctx: torch.Tensor | None) -> torch.Tensor:
        T, E = sel_TE.shape
        G, M = self.cfg.n_groups, self.cfg.topk_groups
        sel_TGe = sel_TE.view(T, G, E // G)  # contiguous groups
        if self.cfg.group_score == "max":
            g_TG = sel_TGe.amax(dim=-1)
        else:
            g_TG = sel_TGe.topk(2, dim=-1).values.sum(dim=-1)
        keep_TG = torch.zeros(T, G, dtype=torch.bool, device=sel_TE.device)
        keep_TG.scatter_(1, g_TG.topk(M, dim=-1).indices, True)
        keep_TE = keep_TG.repeat_interleave(E // G, dim=1)  # (T, G) -> (T, E)
        # -inf outside the kept groups: K <= M * E/G (checked above), so never selected
        return sel_TE.masked_fill(~keep_TE, float("-inf")).topk(self.top_k, dim=-1).indices
