"""The router base class: float32 gating, input jitter, init, and the RouterOutput contract.

Shapes: T tokens (batch*seq flattened), D model width, E routed experts, K experts per token.
Subclasses implement `route(logits_TE, ...)` only; everything numerically delicate
(float32 logits under bf16 autocast, jitter, init) lives here once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn


@dataclass
class RouterConfig:
    name: str = "softmax_topk"
    init: str = "normal"  # normal | uniform | zeros (Switch: small-variance init for stability)
    init_std: float = 0.02
    jitter: float = 0.0  # multiplicative input noise x * U(1-eps, 1+eps) while training (Switch)


@dataclass
class RouterOutput:
    ids_TK: torch.Tensor  # (T, K) int64 expert index per token and slot
    gates_TK: torch.Tensor  # (T, K) float32 weight of each slot's expert output
    logits_TE: torch.Tensor | None = None  # (T, E) float32 raw logits (z-loss)
    probs_TE: torch.Tensor | None = None  # (T, E) float32 routing distribution (balance losses)
    extra_losses: dict[str, torch.Tensor] = field(default_factory=dict)  # router-owned losses
    # device-limited routing (group_limited): experts in n_groups contiguous groups, each
    # token sent to at most topk_groups of them; read by the `device` and `comm` losses
    n_groups: int | None = None
    topk_groups: int | None = None


class Router(nn.Module):
    causal: ClassVar[bool] = True  # False: a token's routing depends on later tokens
    needs_token_ids: ClassVar[bool] = False
    gives: ClassVar[tuple[str, ...]] = ("probs_TE", "logits_TE")  # what aux losses can read

    @classmethod
    def n_params(cls, d_model: int, n_experts: int) -> int:
        """Parameter count, for accounting without building the model."""
        return n_experts * d_model
    # True: the layer must mix tokens densely with the router's own mixing function (Soft
    # MoE, `soft.soft_moe_forward`) instead of token-choice dispatch on ids/gates
    dense_mixture: ClassVar[bool] = False

    def __init__(self, cfg: RouterConfig, d_model: int, n_experts: int, top_k: int):
        super().__init__()
        self.cfg, self.n_experts, self.top_k = cfg, n_experts, top_k
        # kept in float32 whatever the training precision (Zoph et al. 2022)
        self.weight = nn.Parameter(torch.empty(n_experts, d_model, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.cfg.init == "normal":
            nn.init.normal_(self.weight, std=self.cfg.init_std)
        elif self.cfg.init == "uniform":  # same variance as normal(std)
            a = math.sqrt(3.0) * self.cfg.init_std
            nn.init.uniform_(self.weight, -a, a)
        else:
            nn.init.zeros_(self.weight)

    def logits(self, x_TD: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (T, E) float32, never autocast."""
        with torch.autocast(device_type=x_TD.device.type, enabled=False):
            x = x_TD.float()
            if self.training and self.cfg.jitter > 0:
                eps = self.cfg.jitter
                x = x * torch.empty_like(x).uniform_(1.0 - eps, 1.0 + eps)
            return x @ self.weight.float().t()

    def forward(self, x_TD: torch.Tensor, token_ids_T: torch.Tensor | None = None) -> RouterOutput:
        return self.route(self.logits(x_TD), x_TD=x_TD, token_ids_T=token_ids_T)

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        raise NotImplementedError

    def after_step(self, load_E: torch.Tensor) -> None:
        """Called once per optimizer step with the step's expert load (bias balancing)."""
