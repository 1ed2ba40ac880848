"""Sigmoid affinities: s_i = sigmoid(h_i), each expert scored on its own (DeepSeek-V3
arXiv 2412.19437 eq. 15). The balance losses get s / sum_E s, as V3's complementary
sequence-wise loss does (eq. 17-20)."""

from __future__ import annotations

import torch

from ablate.models.moe.routers.parts import Score
from ablate.registry import SCORES


@SCORES.register("sigmoid")
class Sigmoid(Score):
    def __call__(self, h_TE: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_TE = torch.sigmoid(h_TE)
        return s_TE, s_TE / s_TE.sum(dim=-1, keepdim=True)
