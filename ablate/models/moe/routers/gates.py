"""Gates: how much of each chosen expert's output a token takes, (s_TE, ids_TK) -> (T, K).

    prob              g_k = s_{i_k}, renormalised over the token's kept slots when
                      `normalize` (Mixtral, Qwen3, DeepSeek-V3), raw otherwise (Switch,
                      OLMoE, Qwen2, V2)
    scaled_prob       g_k = E * s_{i_k} (no renormalisation)
    straight_through  g = value.detach() + s_i - s_i.detach(), value the renormalised gate
                      (1 per slot without `normalize`)
    uniform           1/K over the token's kept slots, whatever the scores
    auto              prob, except where prob would freeze the router: scaled_prob there
An empty slot (-1) gets 0.

The trap all of them answer: with one expert per token and `normalize: true`, `prob` gives
g = s_i / s_i = 1 for every token, so the gate no longer depends on the router, the LM
loss sends it no gradient and only the balance losses train it (a known bug class:
minimind#858, MegaBlocks PR 87). `constant()` says so, and the config check refuses it
unless model.moe.allow_frozen_router=true.
"""

from __future__ import annotations

import torch

from ablate.models.moe.routers.base import Gate, kept_scores, renormalise
from ablate.registry import GATES


@GATES.register("prob")
class Prob(Gate):
    options = ("normalize",)

    def __call__(self, s_TE: torch.Tensor, ids_TK: torch.Tensor) -> torch.Tensor:
        g_TK, _ = kept_scores(s_TE, ids_TK)
        return renormalise(g_TK) if self.cfg.normalize else g_TK

    def constant(self) -> bool:
        return self.cfg.normalize and self.k == 1


@GATES.register("scaled_prob")
class ScaledProb(Gate):
    """A near-uniform router (p ~ 1/E at init) gives each token about the dense FFN's scale,
    where the raw probability (Switch's gate, `prob` without `normalize`) starts E times
    smaller; the gradient is the probability's, scaled, so the router learns from the LM
    loss. DeepSeek-V3's routed scaling (`scale`) with the factor set to E."""

    def __call__(self, s_TE: torch.Tensor, ids_TK: torch.Tensor) -> torch.Tensor:
        g_TK, _ = kept_scores(s_TE, ids_TK)
        return g_TK * s_TE.shape[-1]


@GATES.register("straight_through")
class StraightThrough(Gate):
    """The expert output keeps the dense FFN's scale (a raw top-1 probability starts near 1/E
    and shrinks it E-fold), while dL/ds_i = <dL/dy, f_i(x)> still tells the router which
    expert helped, as Switch's raw gate does (Fedus et al. 2022 eq. 2; Bengio et al. 2013's
    straight-through estimator)."""

    options = ("normalize",)

    def __call__(self, s_TE: torch.Tensor, ids_TK: torch.Tensor) -> torch.Tensor:
        g_TK, kept_TK = kept_scores(s_TE, ids_TK)
        value_TK = renormalise(g_TK) if self.cfg.normalize else kept_TK.float()
        return value_TK.detach() + g_TK - g_TK.detach()


@GATES.register("uniform")
class Uniform(Gate):
    """Hash routing averages its experts (Roller et al. 2021); no gradient reaches a router."""

    def __call__(self, s_TE, ids_TK: torch.Tensor) -> torch.Tensor:
        kept_TK = (ids_TK >= 0).float()
        return kept_TK / kept_TK.sum(dim=-1, keepdim=True).clamp_min(1.0)

    def constant(self) -> bool:
        return True


@GATES.register("auto")
class Auto(Gate):
    """`prob`, or `scaled_prob` where `prob` is constant (one expert per token, normalised).
    Chosen by measurement (README, "Which top-1 gate"): at E=8, k=1, 300 steps, 2 paired
    seeds on two corpora E x the probability beat the raw probability (Switch) and the
    straight-through gate on both, and the frozen gate by 0.27 nats. With K > 1, or without
    `normalize`, `auto` is `prob` exactly."""

    options = ("normalize",)

    def __init__(self, cfg, k: int):
        super().__init__(cfg, k)
        frozen = Prob(cfg, k).constant()
        self.resolved = ScaledProb(cfg, k) if frozen else Prob(cfg, k)

    def __call__(self, s_TE, ids_TK):
        return self.resolved(s_TE, ids_TK)
