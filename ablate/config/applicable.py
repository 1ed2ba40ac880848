"""The config keys that apply to a run: what its MLflow params show. A dense run has no
`model.moe.*` (logging the MoE defaults, `n_experts=8`, would read as if they applied),
an MHA run no `model.mla.*`, a run without MTP no MTP weight, a run from scratch no
upcycling options. The whole config stays in the run's `config.yaml` artifact."""

from __future__ import annotations

from typing import Any

from ablate.config.schema import RunConfig


def applicable(flat: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """`flat` (flattened `cfg`) without the keys `cfg` does not read."""
    m = cfg.model
    off: list[str] = []
    if m.ffn != "moe":
        off.append("model.moe.")
    if m.attention != "mla":
        off.append("model.mla.")
    if not m.mtp.depth:
        off.append("model.mtp.weight")
    if not (cfg.init.from_checkpoint or cfg.init.dense_steps):
        off += ["init.upcycle", "init.noise"]
    return {k: v for k, v in flat.items() if not k.startswith(tuple(off))}
