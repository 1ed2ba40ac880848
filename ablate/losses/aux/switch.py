"""Switch load balance (Fedus et al. 2022): E * sum_i f_i P_i; 1.0 at perfect balance."""

from __future__ import annotations

import torch

from ablate.losses.aux.common import AuxContext, expert_fraction, need, needs
from ablate.registry import AUX_LOSSES


def switch_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int) -> torch.Tensor:
    """E * sum_i f_i * P_i (Fedus et al. 2022); 1.0 at perfect balance. Gradient flows via P."""
    return n_experts * (expert_fraction(ids_TK, n_experts) * probs_TE.mean(0)).sum()


@AUX_LOSSES.register("switch")
@needs("probs_TE")
def _switch(ctx: AuxContext) -> torch.Tensor:
    """Switch load balance: E * sum_i f_i P_i (Fedus et al. 2022); 1 at balance."""
    probs = need(ctx, "probs_TE", "switch")
    return switch_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts)
