"""Uniform gate: 1/K over the token's kept slots, whatever the scores (hash routing:
Roller et al. 2021 average their experts). No gradient reaches a router through it."""

from __future__ import annotations

import torch

from ablate.models.moe.routers.parts import Gate
from ablate.registry import GATES


@GATES.register("uniform")
class Uniform(Gate):
    def __call__(self, s_TE, ids_TK: torch.Tensor) -> torch.Tensor:
        kept_TK = (ids_TK >= 0).float()
        return kept_TK / kept_TK.sum(dim=-1, keepdim=True).clamp_min(1.0)

    def constant(self) -> bool:
        return True
