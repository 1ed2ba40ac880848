"""Sigmoid affinities with aux-loss-free bias balancing (DeepSeek-V3, arXiv 2412.19437 §2.1.2).

    s_i = sigmoid(u_i)                      affinity of the token to expert i
    select top-K of (s_i + b_i)             b only steers selection, never the gate
    gate_i = scale * s_i / sum_K s_j        (normalize: true; else scale * s_i)
    after each step: b_i += gamma * sign(mean(load) - load_i)   (gamma = bias_update_rate)

b is a float32 buffer (saved with checkpoints, no gradient). The balance losses get the
normalised affinities s / sum_E s, as in V3's complementary sequence-wise loss (eq. 17-20).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


@dataclass
class SigmoidConfig(RouterConfig):
    name: str = "sigmoid"
    scale: float = 1.0  # routed scaling factor (V3 uses 2.5)
    normalize: bool = True  # renormalise the K kept affinities to sum to 1
    bias_update_rate: float = 0.001  # gamma in V3 (0.001 for most of training); 0 disables


@ROUTERS.register("sigmoid", SigmoidConfig)
class SigmoidRouter(Router):
    def __init__(self, cfg: SigmoidConfig, d_model: int, n_experts: int, top_k: int):
        super().__init__(cfg, d_model, n_experts, top_k)
        if cfg.bias_update_rate < 0:
            raise ConfigError("model.moe.router.bias_update_rate", cfg.bias_update_rate,
                              "a number >= 0")
        self.register_buffer("bias", torch.zeros(n_experts, dtype=torch.float32))

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        s_TE = torch.sigmoid(logits_TE)  # float32
        _, ids_TK = (s_TE.detach() + self.bias).topk(self.top_k, dim=-1)  # bias: selection only
        gates_TK = s_TE.gather(-1, ids_TK)
        if self.cfg.normalize:
            gates_TK = gates_TK / gates_TK.sum(dim=-1, keepdim=True)
        gates_TK = gates_TK * self.cfg.scale
        probs_TE = s_TE / s_TE.sum(dim=-1, keepdim=True)
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=probs_TE)

    @torch.no_grad()
    def after_step(self, load_E: torch.Tensor) -> None:
        """b_i += gamma * sign(mean load - load_i): overloaded experts get less attractive."""
        rate = self.cfg.bias_update_rate
        if rate > 0:
            load = load_E.to(self.bias.device, torch.float32)
            self.bias += rate * torch.sign(load.mean() - load)
