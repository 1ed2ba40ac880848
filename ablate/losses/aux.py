"""Balancing and stability losses: pure keyword-only functions, registered by name.

Shapes: T tokens, E routed experts, K slots per token (an id of -1 is an empty slot:
expert choice, top-p, capacity drops), D devices (contiguous groups of E/D experts).
Each registered loss receives an `AuxContext` and returns an unscaled scalar; the MoE
layer multiplies by the weight from `model.moe.aux.<name>` and the LightningModule logs
both, apart from the LM loss. Balance losses are 1.0 at perfect balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ablate.registry import AUX_LOSSES

if TYPE_CHECKING:  # a runtime import would be circular: models.moe.layer imports this module
    from ablate.models.moe.routers.base import RouterOutput


@dataclass
class AuxContext:
    route: RouterOutput
    n_experts: int
    batch_shape: tuple[int, int]  # (B, S): T = B*S, for per-sequence losses
    n_devices: int = 1  # D: contiguous groups of experts for the `device`/`comm` losses
    max_devices: int = 1  # M: the most devices one token's experts may be on


def _counts(ids_NK: torch.Tensor, n: int) -> torch.Tensor:
    """(..., N, K) ids in [-1, n) -> (..., n) float assignment counts; -1 is not counted."""
    flat = ids_NK.flatten(-2)
    flat = torch.where(flat >= 0, flat, n)  # -1 -> an overflow bin, cut off below
    counts = torch.zeros(*flat.shape[:-1], n + 1, device=flat.device)
    return counts.scatter_add_(-1, flat, torch.ones_like(flat, dtype=counts.dtype))[..., :n]


def expert_fraction(ids_TK: torch.Tensor, n_experts: int) -> torch.Tensor:
    """f_E: fraction of the T*K assignments that went to each expert (no gradient).
    Empty slots (-1) are not assignments: f sums to 1 over the kept ones."""
    counts = _counts(ids_TK, n_experts)
    return counts / counts.sum().clamp_min(1.0)


def switch_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int) -> torch.Tensor:
    """E * sum_i f_i * P_i (Fedus et al. 2022); 1.0 at perfect balance. Gradient flows via P."""
    return n_experts * (expert_fraction(ids_TK, n_experts) * probs_TE.mean(0)).sum()


def z_loss(*, logits_TE: torch.Tensor) -> torch.Tensor:
    """(1/T) sum_t logsumexp(u_t)^2 (Zoph et al. 2022, ST-MoE)."""
    return torch.logsumexp(logits_TE, dim=-1).pow(2).mean()


def importance_loss(*, probs_TE: torch.Tensor) -> torch.Tensor:
    """CV(I)^2 with I_i = sum_t p_i(x_t) (Shazeer et al. 2017 eq. 6); 0 at balance.
    Population variance, as tensor2tensor's `cv_squared`."""
    imp_E = probs_TE.sum(0)
    return imp_E.var(unbiased=False) / (imp_E.mean().pow(2) + 1e-10)


def seq_aux_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int,
                 batch_shape: tuple[int, int]) -> torch.Tensor:
    """The switch loss of each sequence, averaged over the B sequences (DeepSeek-V3 eq. 17-20:
    f_i = E/(K S) * count_i, P_i = mean over the sequence's tokens)."""
    B, S = batch_shape
    counts_BE = _counts(ids_TK.view(B, S, -1), n_experts)
    f_BE = counts_BE / counts_BE.sum(-1, keepdim=True).clamp_min(1.0)
    P_BE = probs_TE.view(B, S, n_experts).mean(1)
    return (n_experts * (f_BE * P_BE).sum(-1)).mean()


def _per_device(x_E: torch.Tensor, n_devices: int) -> torch.Tensor:
    E = x_E.shape[-1]
    if n_devices < 1 or E % n_devices:
        raise ValueError(f"n_devices={n_devices} must divide the {E} routed experts")
    return x_E.view(n_devices, E // n_devices).sum(-1)  # (D,): experts are contiguous per device


def device_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int,
                n_devices: int) -> torch.Tensor:
    """Device-level balance (DeepSeek-V2 eq. 14-16): sum_i f'_i P'_i with
    f'_i = mean_{j in dev i} f_j (f_j = E/(K T) count_j) = D * F_i and P'_i = sum_{j in i} P_j,
    i.e. the switch loss over devices: D * sum_i F_i P'_i, 1.0 at balance."""
    F_D = _per_device(expert_fraction(ids_TK, n_experts), n_devices)
    P_D = _per_device(probs_TE.mean(0), n_devices)
    return n_devices * (F_D * P_D).sum()


def comm_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int, n_devices: int,
              max_devices: int) -> torch.Tensor:
    """Communication balance (DeepSeek-V2 eq. 17-19): sum_i f''_i P''_i with
    f''_i = D/(M T) * #tokens sent to device i (a token counts once per device it reaches),
    P''_i = sum_{j in dev i} P_j, M = max devices per token. 1.0 when every token reaches M
    devices and devices receive equally."""
    T = ids_TK.shape[0]
    group = n_experts // n_devices
    _per_device(probs_TE[:1], n_devices)  # checks that D divides E
    dev_TK = torch.where(ids_TK >= 0, ids_TK // group, n_devices)  # -1 -> overflow column
    sent_TD = torch.zeros(T, n_devices + 1, device=ids_TK.device)
    sent_TD = sent_TD.scatter_(1, dev_TK, 1.0)[:, :n_devices]  # 1 per (token, device) reached
    f_D = n_devices / (max_devices * T) * sent_TD.sum(0)
    return (f_D * _per_device(probs_TE.mean(0), n_devices)).sum()


def needs(*attrs: str):
    """Declare which RouterOutput fields a loss reads, so configs are checked up front."""

    def deco(fn):
        fn.needs = attrs
        return fn

    return deco


def _need(ctx: AuxContext, attr: str, loss: str) -> torch.Tensor:
    value = getattr(ctx.route, attr)
    if value is None:
        raise ValueError(f"aux loss {loss!r} needs router {attr}, which this router does not give")
    return value


@AUX_LOSSES.register("switch")
@needs("probs_TE")
def _switch(ctx: AuxContext) -> torch.Tensor:
    """Switch load balance: E * sum_i f_i P_i (Fedus et al. 2022); 1 at balance."""
    probs = _need(ctx, "probs_TE", "switch")
    return switch_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts)


@AUX_LOSSES.register("z")
@needs("logits_TE")
def _z(ctx: AuxContext) -> torch.Tensor:
    """Router z-loss: mean logsumexp(logits)^2 (Zoph et al. 2022); keeps logits small."""
    return z_loss(logits_TE=_need(ctx, "logits_TE", "z"))


@AUX_LOSSES.register("importance")
@needs("probs_TE")
def _importance(ctx: AuxContext) -> torch.Tensor:
    """Importance loss: CV(sum_t p(x_t))^2 (Shazeer et al. 2017); 0 at balance."""
    return importance_loss(probs_TE=_need(ctx, "probs_TE", "importance"))


@AUX_LOSSES.register("seq_aux")
@needs("probs_TE")
def _seq_aux(ctx: AuxContext) -> torch.Tensor:
    """Switch balance per sequence, averaged (DeepSeek-V3's complementary loss)."""
    probs = _need(ctx, "probs_TE", "seq_aux")
    return seq_aux_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts,
                        batch_shape=ctx.batch_shape)


@AUX_LOSSES.register("device")
@needs("probs_TE")
def _device(ctx: AuxContext) -> torch.Tensor:
    """Switch balance over devices (groups of experts) (DeepSeek-V2 eq. 14-16)."""
    probs = _need(ctx, "probs_TE", "device")
    return device_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts,
                       n_devices=ctx.n_devices)


@AUX_LOSSES.register("comm")
@needs("probs_TE")
def _comm(ctx: AuxContext) -> torch.Tensor:
    """Communication balance: tokens received per device (DeepSeek-V2 eq. 17-19)."""
    probs = _need(ctx, "probs_TE", "comm")
    return comm_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts,
                     n_devices=ctx.n_devices, max_devices=ctx.max_devices)
