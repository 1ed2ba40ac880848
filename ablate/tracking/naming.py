"""Names that say what a run is: run names (`moe-<router>-E8-k2-s0`, with the seed) and
the seed-free arm of a run (the `arm` param and `ablate.arm` tag, what MLflow's group-by
pools repeats by: a sweep point's label, or the config's name outside a sweep)."""

from __future__ import annotations

from typing import Any

from ablate.config.schema import RunConfig


def arm_name(cfg: RunConfig, seed: bool = True) -> str:
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
    return f"{name}-s{cfg.trainer.seed}" if seed else name


def fmt_value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def short_keys(keys: list[str]) -> dict[str, str]:
    """`model.moe.top_k` -> `top_k` where the last segment is unambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def point_label(params: dict[str, Any]) -> str:
    """A sweep point as one label: its arm, else its sampled values (`lr=0.003, top_k=2`)."""
    if "arm" in params:
        return str(params["arm"])
    if not params:
        return "(no params)"
    names = short_keys(sorted(params))
    return ", ".join(f"{names[k]}={fmt_value(v)}" for k, v in sorted(params.items()))
