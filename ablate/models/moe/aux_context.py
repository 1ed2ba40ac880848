"""What the MoE layer hands every aux loss: its router's output and the layer's sizes.

Defined with the layer (the losses read it, the layer builds it): models never import
losses; the losses are found through `ablate.registry.AUX_LOSSES`.
Shapes: T tokens, E routed experts, K slots per token, D devices.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.models.moe.routers.base import RouterOutput


@dataclass
class AuxContext:
    route: RouterOutput
    n_experts: int
    batch_shape: tuple[int, int]  # (B, S): T = B*S, for per-sequence losses
    n_devices: int = 1  # D: contiguous groups of experts for the `device`/`comm` losses
    max_devices: int = 1  # M: the most devices one token's experts may be on
