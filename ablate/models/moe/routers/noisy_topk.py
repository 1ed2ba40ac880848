"""Noisy top-K gating (Shazeer et al. 2017, "Outrageously Large Neural Networks", eq. 3-5).

    H(x) = x W_g + N(0, 1) * softplus(x W_noise)   (noise while training only)
    G(x) = softmax(KeepTopK(H(x), K))

W_noise is a learned (E, D) float32 matrix, zero-initialised (the paper's recommendation:
noise std softplus(0) ~ 0.69 at the start, then learned). The balance losses get
softmax(H) over all E (the paper's own smooth load estimator is not reproduced).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


@dataclass
class NoisyTopKConfig(RouterConfig):
    name: str = "noisy_topk"


@ROUTERS.register("noisy_topk", NoisyTopKConfig)
class NoisyTopKRouter(Router):
    @classmethod
    def n_params(cls, d_model: int, n_experts: int) -> int:
        return 2 * n_experts * d_model  # W_gate and W_noise
    def __init__(self, cfg: NoisyTopKConfig, d_model: int, n_experts: int, top_k: int):
        super().__init__(cfg, d_model, n_experts, top_k)
        self.w_noise = nn.Parameter(torch.zeros(n_experts, d_model, dtype=torch.float32))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "w_noise"):  # the base __init__ calls this before w_noise exists
            nn.init.zeros_(self.w_noise)

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        h_TE = logits_TE
        x_TD = ctx.get("x_TD")
        if self.training and x_TD is not None:
            with torch.autocast(device_type=x_TD.device.type, enabled=False):
                std_TE = F.softplus(x_TD.float() @ self.w_noise.float().t())  # (T, E) float32
            h_TE = logits_TE + torch.randn_like(logits_TE) * std_TE
        top_TK, ids_TK = h_TE.topk(self.top_k, dim=-1)
        gates_TK = top_TK.softmax(dim=-1)  # softmax over the K kept only (eq. 3)
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=h_TE.softmax(dim=-1))
