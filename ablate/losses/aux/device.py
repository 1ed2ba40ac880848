"""Device-level balance (DeepSeek-V2 eq. 14-16): the switch loss over devices, each a
contiguous group of E/D experts."""

from __future__ import annotations

import torch

from ablate.losses.aux.common import AuxContext, expert_fraction, need, needs, per_device
from ablate.registry import AUX_LOSSES


def device_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int,
                n_devices: int) -> torch.Tensor:
    """Device-level balance (DeepSeek-V2 eq. 14-16): sum_i f'_i P'_i with
    f'_i = mean_{j in dev i} f_j (f_j = E/(K T) count_j) = D * F_i and P'_i = sum_{j in i} P_j,
    i.e. the switch loss over devices: D * sum_i F_i P'_i, 1.0 at balance."""
    F_D = per_device(expert_fraction(ids_TK, n_experts), n_devices)
    P_D = per_device(probs_TE.mean(0), n_devices)
    return n_devices * (F_D * P_D).sum()


@AUX_LOSSES.register("device")
@needs("probs_TE")
def _device(ctx: AuxContext) -> torch.Tensor:
    """Switch balance over devices (groups of experts) (DeepSeek-V2 eq. 14-16)."""
    probs = need(ctx, "probs_TE", "device")
    return device_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts,
                       n_devices=ctx.n_devices)
