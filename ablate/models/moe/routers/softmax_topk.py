"""Token-choice top-K over a softmax (Switch K=1, GShard, DeepSeek v1/v2, Qwen, OLMoE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


@dataclass
class SoftmaxTopKConfig(RouterConfig):
    name: str = "softmax_topk"
    normalize: bool = True  # renormalise the K kept probabilities to sum to 1


@ROUTERS.register("softmax_topk", SoftmaxTopKConfig)
class SoftmaxTopKRouter(Router):
    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        probs_TE = logits_TE.softmax(dim=-1)  # float32
        gates_TK, ids_TK = probs_TE.topk(self.top_k, dim=-1)
        if self.cfg.normalize:
            gates_TK = gates_TK / gates_TK.sum(dim=-1, keepdim=True)
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=probs_TE)
