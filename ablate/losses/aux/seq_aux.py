"""Sequence-wise balance (DeepSeek-V3's complementary loss): the switch loss of each
sequence, averaged over the batch."""

from __future__ import annotations

import torch

from ablate.losses.aux.common import AuxContext, counts, need, needs
from ablate.registry import AUX_LOSSES


def seq_aux_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int,
                 batch_shape: tuple[int, int]) -> torch.Tensor:
    """The switch loss of each sequence, averaged over the B sequences (DeepSeek-V3 eq. 17-20:
    f_i = E/(K S) * count_i, P_i = mean over the sequence's tokens)."""
    B, S = batch_shape
    counts_BE = counts(ids_TK.view(B, S, -1), n_experts)
    f_BE = counts_BE / counts_BE.sum(-1, keepdim=True).clamp_min(1.0)
    P_BE = probs_TE.view(B, S, n_experts).mean(1)
    return (n_experts * (f_BE * P_BE).sum(-1)).mean()


@AUX_LOSSES.register("seq_aux")
@needs("probs_TE")
def _seq_aux(ctx: AuxContext) -> torch.Tensor:
    """Switch balance per sequence, averaged (DeepSeek-V3's complementary loss)."""
    probs = need(ctx, "probs_TE", "seq_aux")
    return seq_aux_loss(probs_TE=probs, ids_TK=ctx.route.ids_TK, n_experts=ctx.n_experts,
                        batch_shape=ctx.batch_shape)
