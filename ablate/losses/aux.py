"""Balancing and stability losses: pure keyword-only functions, registered by name.

Shapes: T tokens, E routed experts, K slots per token. Each registered loss receives an
`AuxContext` and returns an unscaled scalar; the MoE layer multiplies by the weight from
`model.moe.aux.<name>` and the LightningModule logs both, apart from the LM loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.models.moe.routers.base import RouterOutput
from ablate.registry import AUX_LOSSES


@dataclass
class AuxContext:
    route: RouterOutput
    n_experts: int
    batch_shape: tuple[int, int]  # (B, S): T = B*S, for per-sequence losses


def expert_fraction(ids_TK: torch.Tensor, n_experts: int) -> torch.Tensor:
    """f_E: fraction of the T*K assignments that went to each expert (no gradient)."""
    counts = torch.bincount(ids_TK.flatten(), minlength=n_experts).float()
    return counts / ids_TK.numel()


def switch_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int) -> torch.Tensor:
    """E * sum_i f_i * P_i (Fedus et al. 2022); 1.0 at perfect balance. Gradient flows via P."""
    return n_experts * (expert_fraction(ids_TK, n_experts) * probs_TE.mean(0)).sum()


def z_loss(*, logits_TE: torch.Tensor) -> torch.Tensor:
    """(1/T) sum_t logsumexp(u_t)^2 (Zoph et al. 2022, ST-MoE)."""
    return torch.logsumexp(logits_TE, dim=-1).pow(2).mean()


def _need(ctx: AuxContext, attr: str, loss: str) -> torch.Tensor:
    value = getattr(ctx.route, attr)
    if value is None:
        raise ValueError(f"aux loss {loss!r} needs router {attr}, which this router does not give")
    return value


@AUX_LOSSES.register("switch")
def _switch(ctx: AuxContext) -> torch.Tensor:
    probs = _need(ctx, "probs_TE", "switch")
    return switch_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts)


@AUX_LOSSES.register("z")
def _z(ctx: AuxContext) -> torch.Tensor:
    return z_loss(logits_TE=_need(ctx, "logits_TE", "z"))
