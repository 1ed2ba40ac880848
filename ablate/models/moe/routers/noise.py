"""Learned routing noise (Shazeer et al. 2017, "Outrageously Large Neural Networks", eq. 4):

    H(x) = u + N(0, 1) * softplus(x W_noise)     while training; H = u at eval

The noise scale W_noise (E, D) is learned (it starts at 0: softplus(0) ~ 0.69). The
z-loss keeps reading the clean logits u.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LearnedNoise(nn.Module):
    def __init__(self, d_model: int, n_experts: int):
        super().__init__()
        self.w_noise = nn.Parameter(torch.zeros(n_experts, d_model, dtype=torch.float32))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.w_noise)

    def forward(self, logits_TE: torch.Tensor, x_TD: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return logits_TE
        with torch.autocast(device_type=x_TD.device.type, enabled=False):
            std_TE = F.softplus(x_TD.float() @ self.w_noise.float().t())  # (T, E) float32
        return logits_TE + torch.randn_like(logits_TE) * std_TE
