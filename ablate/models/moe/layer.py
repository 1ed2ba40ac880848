"""The MoE FFN layer: router -> routed experts (+ shared experts) -> aux losses and stats.

Legend: B batch, S sequence, T = B*S tokens, D model width, E routed experts, K per token.
The aux losses are found through `ablate.registry.AUX_LOSSES` (models never import losses);
each receives the layer's `AuxContext`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import OmegaConf
from torch import nn

from ablate.config.derived import resolved
from ablate.config.schema import MoEConfig
from ablate.models.mlp import SwiGLU
from ablate.models.moe.capacity import apply_capacity
from ablate.models.moe.experts import RoutedExperts
from ablate.models.moe.routers.base import Router, RouterOutput
from ablate.registry import AUX_LOSSES, ROUTERS


@dataclass
class AuxContext:
    """What the layer hands every aux loss: its router's output and the layer's sizes."""

    route: RouterOutput
    n_experts: int
    batch_shape: tuple[int, int]  # (B, S): T = B*S, for per-sequence losses
    n_devices: int = 1  # D: contiguous groups of experts for the `device`/`comm` losses
    max_devices: int = 1  # M: the most devices one token's experts may be on


def build_router(router_cfg, d_model: int, n_experts: int, top_k: int) -> Router:
    """router_cfg: a registered router config dataclass, or a dict with a `name`."""
    if isinstance(router_cfg, dict):
        entry = ROUTERS.get(router_cfg.get("name"))
        router_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(entry.config),
                                                         router_cfg))
    return ROUTERS.get(router_cfg.name).obj(router_cfg, d_model, n_experts, top_k)


class MoELayer(nn.Module):
    def __init__(self, cfg: MoEConfig, d_model: int, d_ff: int):
        super().__init__()
        # load_config resolved the derived sizes; a MoEConfig built in Python is resolved here
        self.cfg = cfg = resolved(cfg, d_ff)
        self.router = build_router(cfg.router, d_model, cfg.routed_experts, cfg.routed_top_k)
        # all E experts on this process (expert parallelism shards them from outside:
        # ablate/parallel/expert_parallel.py)
        self.experts = RoutedExperts(cfg.routed_experts, d_model, cfg.expert_width, cfg.dispatch)
        self.experts.dropout = cfg.expert_dropout
        # n shared experts of width d_shared == one SwiGLU of width n*d_shared (same function)
        self.shared = SwiGLU(d_model, cfg.n_shared * cfg.shared_width) if cfg.n_shared else None
        self.shared_gate = (nn.Linear(d_model, 1, bias=False) if (self.shared and cfg.shared_gate)
                            else None)
        # a weight of 0 switches a loss off (a YAML merge cannot delete a default key)
        self.aux_fns = {name: AUX_LOSSES.get(name).obj for name, w in cfg.aux.items() if w > 0}
        self.collect_stats = False  # set by the routing-stats callback on its interval
        self.last_load_E: torch.Tensor | None = None
        self.last_stats: dict[str, torch.Tensor] = {}

    def forward(self, x_BSD: torch.Tensor, token_ids_BS: torch.Tensor | None = None):
        """(B, S, D) -> (B, S, D), {aux loss name: unscaled scalar}."""
        B, S, D = x_BSD.shape
        x_TD = x_BSD.reshape(B * S, D)
        ids_T = token_ids_BS.reshape(-1) if token_ids_BS is not None else None
        route = self.router(x_TD, token_ids_T=ids_T)
        cf = self.cfg.capacity_factor if self.training else self.cfg.eval_capacity_factor
        ids_TK = apply_capacity(  # cf None: dropless, ids unchanged
            route.ids_TK, route.gates_TK, None, self.cfg.routed_experts, cf, self.cfg.drop_priority
        )
        y_TD = self.router.mix(self.experts, x_BSD, route, ids_TK)  # (T, D)
        if self.shared is not None:
            s_TD = self.shared(x_TD)
            if self.shared_gate is not None:  # Qwen: sigmoid gate on the shared expert
                s_TD = torch.sigmoid(self.shared_gate(x_TD)) * s_TD
            y_TD = y_TD + s_TD
        ctx = AuxContext(route, self.cfg.routed_experts, (B, S), *self.devices(route))
        aux = {name: fn(ctx) for name, fn in self.aux_fns.items()}
        aux.update(route.extra_losses)
        self._record(route, ids_TK)
        return y_TD.view(B, S, D), aux

    def devices(self, route: RouterOutput) -> tuple[int, int]:
        """(D devices, M most devices a token reaches) for the `device`/`comm` losses:
        `model.moe.n_devices`, else the router's groups if it limits them, else one."""
        groups = self.router.device_groups
        if groups is not None and self.cfg.n_devices in (None, groups[0]):
            return groups
        n = self.cfg.n_devices or 1
        return n, min(n, route.ids_TK.shape[1])

    @torch.no_grad()
    def _record(self, route: RouterOutput, ids_TK: torch.Tensor) -> None:
        """ids_TK: the assignments after capacity (dropped slots are -1)."""
        ids = ids_TK[ids_TK >= 0]
        self.last_load_E = torch.bincount(ids, minlength=self.cfg.routed_experts).float()
        if not self.collect_stats:
            return
        dropped = ((ids_TK < 0) & (route.ids_TK >= 0)).float().sum()
        stats = {"load_E": self.last_load_E,
                 "drop_frac": dropped / (route.ids_TK >= 0).sum().clamp_min(1)}
        if route.probs_TE is not None:
            p = route.probs_TE.clamp_min(1e-12)
            stats["router_entropy"] = -(p * p.log()).sum(-1).mean()
        if route.logits_TE is not None:
            stats["z"] = torch.logsumexp(route.logits_TE, -1).pow(2).mean()
        self.last_stats = stats
