"""Run names that say the arm (`moe-<router>-E8-k2-s0`), not a random word."""

from __future__ import annotations

from ablate.config.schema import RunConfig
from ablate.models.moe.sizes import moe_dims


def arm_name(cfg: RunConfig) -> str:
    m = cfg.model
    if m.ffn == "dense":
        name = f"dense-ff{m.d_ff}"
    else:
        d = moe_dims(m.moe, m.d_ff)
        name = f"moe-{m.moe.router.name}-E{d.n_experts}-k{d.top_k}"
        if m.moe.granularity > 1:
            name += f"-g{m.moe.granularity}"
        if d.n_shared:
            name += f"-sh{d.n_shared}"
    return f"{name}-s{cfg.trainer.seed}"
