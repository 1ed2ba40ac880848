"""Softmax affinities: s = softmax(h) over the E experts (Shazeer et al. 2017; Switch,
GShard, Mixtral, OLMoE, Qwen, DeepSeek-V1/V2). s is already a distribution."""

from __future__ import annotations

import torch

from ablate.models.moe.routers.parts import Score
from ablate.registry import SCORES


@SCORES.register("softmax")
class Softmax(Score):
    def __call__(self, h_TE: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_TE = h_TE.softmax(dim=-1)  # float32: the logits are float32
        return s_TE, s_TE
