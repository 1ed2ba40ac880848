"""Router z-loss (Zoph et al. 2022, ST-MoE): keeps the router's logits small."""

from __future__ import annotations

import torch

from ablate.losses.aux.common import AuxContext, need, needs
from ablate.registry import AUX_LOSSES


def z_loss(*, logits_TE: torch.Tensor) -> torch.Tensor:
    """(1/T) sum_t logsumexp(u_t)^2 (Zoph et al. 2022, ST-MoE)."""
    return torch.logsumexp(logits_TE, dim=-1).pow(2).mean()


@AUX_LOSSES.register("z")
@needs("logits_TE")
def _z(ctx: AuxContext) -> torch.Tensor:
    """Router z-loss: mean logsumexp(logits)^2 (Zoph et al. 2022); keeps logits small."""
    return z_loss(logits_TE=need(ctx, "logits_TE", "z"))
