"""Importance loss (Shazeer et al. 2017): the squared coefficient of variation of the
experts' summed router probabilities; 0 at balance."""

from __future__ import annotations

import torch

from ablate.losses.aux.common import AuxContext, need, needs
from ablate.registry import AUX_LOSSES


def importance_loss(*, probs_TE: torch.Tensor) -> torch.Tensor:
    """CV(I)^2 with I_i = sum_t p_i(x_t) (Shazeer et al. 2017 eq. 6); 0 at balance.
    Population variance, as tensor2tensor's `cv_squared`."""
    imp_E = probs_TE.sum(0)
    return imp_E.var(unbiased=False) / (imp_E.mean().pow(2) + 1e-10)


@AUX_LOSSES.register("importance")
@needs("probs_TE")
def _importance(ctx: AuxContext) -> torch.Tensor:
    """Importance loss: CV(sum_t p(x_t))^2 (Shazeer et al. 2017); 0 at balance."""
    return importance_loss(probs_TE=need(ctx, "probs_TE", "importance"))
