"""Communication balance (DeepSeek-V2 eq. 17-19): tokens received per device, a token
counted once per device its experts are on."""

from __future__ import annotations

import torch

from ablate.losses.aux.common import AuxContext, need, needs, per_device
from ablate.registry import AUX_LOSSES


def comm_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int, n_devices: int,
              max_devices: int) -> torch.Tensor:
    """Communication balance (DeepSeek-V2 eq. 17-19): sum_i f''_i P''_i with
    f''_i = D/(M T) * #tokens sent to device i (a token counts once per device it reaches),
    P''_i = sum_{j in dev i} P_j, M = max devices per token. 1.0 when every token reaches M
    devices and devices receive equally."""
    T = ids_TK.shape[0]
    group = n_experts // n_devices
    per_device(probs_TE[:1], n_devices)  # checks that D divides E
    dev_TK = torch.where(ids_TK >= 0, ids_TK // group, n_devices)  # -1 -> overflow column
    sent_TD = torch.zeros(T, n_devices + 1, device=ids_TK.device)
    sent_TD = sent_TD.scatter_(1, dev_TK, 1.0)[:, :n_devices]  # 1 per (token, device) reached
    f_D = n_devices / (max_devices * T) * sent_TD.sum(0)
    return (f_D * per_device(probs_TE.mean(0), n_devices)).sum()


@AUX_LOSSES.register("comm")
@needs("probs_TE")
def _comm(ctx: AuxContext) -> torch.Tensor:
    """Communication balance: tokens received per device (DeepSeek-V2 eq. 17-19)."""
    probs = need(ctx, "probs_TE", "comm")
    return comm_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts,
                     n_devices=ctx.n_devices, max_devices=ctx.max_devices)
