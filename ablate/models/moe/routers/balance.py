"""Aux-loss-free load balancing (DeepSeek-V3 arXiv 2412.19437 §2.1.2; Wang et al. 2024).

A per-expert bias b is added to the selection scores only (top-K and group ranking), never
to the gates, and moves after every optimizer step against the load:

    b_i += gamma * sign(mean(load) - load_i)      (gamma = bias_update_rate)

b is a float32 buffer (saved with checkpoints, no gradient); gamma = 0 keeps it at 0.
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.errors import ConfigError


class BiasBalance(nn.Module):
    def __init__(self, n_experts: int, rate: float):
        super().__init__()
        if not rate >= 0:
            raise ConfigError("model.moe.router.bias_update_rate", rate, "a number >= 0")
        self.rate = rate
        self.register_buffer("bias", torch.zeros(n_experts, dtype=torch.float32))

    @torch.no_grad()
    def update(self, load_E: torch.Tensor) -> None:
        """Overloaded experts get less attractive, underloaded ones more."""
        if self.rate > 0:
            load = load_E.to(self.bias.device, torch.float32)
            self.bias += self.rate * torch.sign(load.mean() - load)
