"""The affinity itself: g_k = s_{i_k}, renormalised over the token's kept slots when
`normalize` (Mixtral, Qwen3, DeepSeek-V3), raw otherwise (Switch, OLMoE, Qwen2, V2).

With one expert per token and `normalize: true`, g = s_i / s_i = 1 for every token: the
gate no longer depends on the router, the LM loss sends it no gradient and only the
balance losses train it (a known bug class: minimind#858, MegaBlocks PR 87). `constant()`
says so, and the config check refuses it unless model.moe.allow_frozen_router=true.
"""

from __future__ import annotations

import torch

from ablate.models.moe.routers.parts import Gate, kept_scores, renormalise
from ablate.registry import GATES


@GATES.register("prob")
class Prob(Gate):
    options = ("normalize",)

    def __call__(self, s_TE: torch.Tensor, ids_TK: torch.Tensor) -> torch.Tensor:
        g_TK, _ = kept_scores(s_TE, ids_TK)
        return renormalise(g_TK) if self.cfg.normalize else g_TK

    def constant(self) -> bool:
        return self.cfg.normalize and self.k == 1
