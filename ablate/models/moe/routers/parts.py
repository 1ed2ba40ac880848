"""What each kind of router part is: the small interfaces the composed router calls.

    logits u (T, E) --noise--> h --score--> s (T, E), probs (T, E)
    s + bias --selection--> ids (T, K)          (the bias steers selection only)
    s, ids --gate--> gates (T, K)  * scale
Legend: T tokens, E experts, K slots per token (-1: an empty slot).
A part is one file that registers itself (`SCORES`, `SELECTIONS`, `GATES` in
`ablate.registry`) and names the config keys it reads in `options`, so the composed
router can refuse options of parts it does not use.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ablate.models.moe.routers.config import RoutingConfig


class Score:
    """h (T, E) float32 -> (s, probs): s the per-expert affinity the gates are made of,
    probs a distribution over the E experts for balance losses and entropy."""

    options: ClassVar[tuple[str, ...]] = ()
    learned: ClassVar[bool] = True  # False: no logits at all (hash routing)

    def __call__(self, h_TE: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Selection(nn.Module):
    """Which experts each token goes to. Never differentiable: `sel_TE` is detached.

    forward(sel_TE, s_TE=..., logits_TE=..., token_ids_T=...) -> ids (T, k_out) int64.
    sel_TE = s + bias (the selection scores); s_TE carries gradient (REINFORCE needs it)."""

    options: ClassVar[tuple[str, ...]] = ()
    causal: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = True
    needs_token_ids: ClassVar[bool] = False
    dense_mixture: ClassVar[bool] = False
    varies_k: ClassVar[bool] = False  # the number of experts per token differs per token
    needs_distribution: ClassVar[bool] = False  # reads the scores as probabilities (softmax)
    learns_from: ClassVar[str] = "lm"  # "policy": the router learns from reward_losses
    reward_loss_names: ClassVar[tuple[str, ...]] = ()  # the keys reward_losses returns

    def __init__(self, cfg: RoutingConfig, n_experts: int, top_k: int):
        super().__init__()
        self.cfg, self.n_experts, self.top_k = cfg, n_experts, top_k

    def forward(self, sel_TE: torch.Tensor | None, **ctx: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def reward_losses(self, reward_T: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
        return {}

    @property
    def device_groups(self) -> tuple[int, int] | None:
        return None


class Gate:
    """(s_TE, ids_TK) -> gates (T, K) float32; an empty slot (-1) gets 0."""

    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: RoutingConfig, k: int):
        self.cfg, self.k = cfg, k

    def __call__(self, s_TE: torch.Tensor | None, ids_TK: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def constant(self) -> bool:
        """True when the gate's value cannot depend on the scores (no gradient reaches them)."""
        return False


def kept_scores(s_TE: torch.Tensor, ids_TK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s at each slot's expert, 0 at empty slots; the mask of kept slots), both (T, K)."""
    kept_TK = ids_TK >= 0
    s_TK = s_TE.gather(-1, ids_TK.clamp_min(0))
    return torch.where(kept_TK, s_TK, 0.0), kept_TK


def renormalise(g_TK: torch.Tensor) -> torch.Tensor:
    """g / sum over the slots (1e-20 keeps a row of zeros finite, as DeepSeek-V3 does)."""
    return g_TK / (g_TK.sum(dim=-1, keepdim=True) + 1e-20)
