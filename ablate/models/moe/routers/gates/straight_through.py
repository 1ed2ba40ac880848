"""Straight-through gate: the value of the renormalised gate (1 with one expert per
token, or 1 per slot without `normalize`), the gradient of the raw affinity:

    g = value.detach() + s_i - s_i.detach()

The expert output keeps the dense FFN's scale (a raw top-1 probability starts near 1/E and
shrinks it E-fold), while dL/ds_i = <dL/dy, f_i(x)> still tells the router which expert
helped, as Switch's raw gate does (Fedus et al. 2022 eq. 2; Bengio et al. 2013's
straight-through estimator).
"""

from __future__ import annotations

import torch

from ablate.models.moe.routers.parts import Gate, kept_scores, renormalise
from ablate.registry import GATES


@GATES.register("straight_through")
class StraightThrough(Gate):
    options = ("normalize",)

    def __call__(self, s_TE: torch.Tensor, ids_TK: torch.Tensor) -> torch.Tensor:
        g_TK, kept_TK = kept_scores(s_TE, ids_TK)
        value_TK = renormalise(g_TK) if self.cfg.normalize else kept_TK.float()
        return value_TK.detach() + g_TK - g_TK.detach()
