"""Run names that say the arm (`moe-<router>-E8-k2-s0`), not a random word."""

from __future__ import annotations

from ablate.config.schema import RunConfig


def arm_name(cfg: RunConfig) -> str:
    m = cfg.model
    if m.ffn == "dense":
        name = f"dense-ff{m.d_ff}"
    else:
        moe = m.moe  # E and K after granularity: the derived sizes load_config resolved
        name = f"moe-{moe.router.name}-E{moe.routed_experts}-k{moe.routed_top_k}"
        if moe.granularity > 1:
            name += f"-g{moe.granularity}"
        if moe.n_shared:
            name += f"-sh{moe.n_shared}"
    return f"{name}-s{cfg.trainer.seed}"
