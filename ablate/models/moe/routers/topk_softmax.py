"""Top-K of the logits, softmax over the K kept only (Mixtral; Shazeer et al. 2017 without noise).

Equal to `softmax_topk` with `normalize: true`: softmax is monotone, so the top-K of u and
of softmax(u) are the same experts, and p_i / sum_K p_j = exp(u_i) / sum_K exp(u_j)
(the partition function cancels). `tests/models/moe/test_routers.py` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


@dataclass
class TopKSoftmaxConfig(RouterConfig):
    name: str = "topk_softmax"


@ROUTERS.register("topk_softmax", TopKSoftmaxConfig)
class TopKSoftmaxRouter(Router):
    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        top_TK, ids_TK = logits_TE.topk(self.top_k, dim=-1)
        gates_TK = top_TK.softmax(dim=-1)  # float32: logits are float32
        # the balance losses still want the full distribution over all E experts
        probs_TE = logits_TE.softmax(dim=-1)
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=probs_TE)
