"""Scores: the routing logits h (T, E) float32 -> (s, probs).

s is the per-expert affinity the gates are made of, probs a distribution over the E experts
for the balance losses and the entropy statistic.
    softmax  s = softmax(h) over the E experts; probs = s (Shazeer et al. 2017; Switch,
             GShard, Mixtral, OLMoE, Qwen, DeepSeek-V1/V2)
    sigmoid  s_i = sigmoid(h_i), each expert scored on its own (DeepSeek-V3 arXiv
             2412.19437 eq. 15); probs = s / sum_E s, as V3's complementary sequence-wise
             loss reads them (eq. 17-20)
    none     no learned weight and no logits (hash routing): selections that need scores,
             noise and score-reading gates are refused with it
"""

from __future__ import annotations

import torch

from ablate.models.moe.routers.base import Score
from ablate.registry import SCORES


@SCORES.register("softmax")
class Softmax(Score):
    def __call__(self, h_TE: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_TE = h_TE.softmax(dim=-1)  # float32: the logits are float32
        return s_TE, s_TE


@SCORES.register("sigmoid")
class Sigmoid(Score):
    def __call__(self, h_TE: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_TE = torch.sigmoid(h_TE)
        return s_TE, s_TE / s_TE.sum(dim=-1, keepdim=True)


@SCORES.register("none")
class NoScore(Score):
    learned = False

    def __call__(self, h_TE):
        raise RuntimeError("score=none has no affinities")
