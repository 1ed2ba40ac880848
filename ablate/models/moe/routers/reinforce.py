"""REINFORCE routing (Bengio et al. 2013; Clark et al. 2022 "Unified Scaling Laws", RL-R).

Training: sample K distinct experts from p = softmax(u) (Gumbel-top-K, Kool et al. 2019:
top-K of log p + Gumbel noise is a sample without replacement); eval: top-K of u.
Gates = p renormalised over the K chosen. The selection is discrete, so the router weight
learns from the gates and from the policy gradient
    L = -mean_t (r_t - b) * log pi(ids_t),   b = EMA of the mean reward,
where r_t = -(the token's LM loss), which only the LightningModule has. The router keeps
log pi of its last training forward in `_logp_TK` (Plackett-Luce per slot, so its sum is
the exact log-probability of the ordered sample) and `reinforce_loss(reward_T)` returns L.
`LMModule.training_step` adds `policy_weight * reinforce_loss(-lm_T)` for every such layer,
with lm_T the per-token LM loss, and logs it as `train/aux/reinforce`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.registry import ROUTERS


@dataclass
class ReinforceConfig(RouterConfig):
    name: str = "reinforce"
    baseline_momentum: float = 0.9  # EMA of the mean reward (variance reduction)
    policy_weight: float = 1.0  # weight of the REINFORCE term in the training loss


@ROUTERS.register("reinforce", ReinforceConfig)
class ReinforceRouter(Router):
    def __init__(self, cfg: ReinforceConfig, d_model: int, n_experts: int, top_k: int):
        super().__init__(cfg, d_model, n_experts, top_k)
        if not 0 <= cfg.baseline_momentum < 1:
            raise ConfigError("model.moe.router.baseline_momentum", cfg.baseline_momentum,
                              "0 <= m < 1")
        self.register_buffer("baseline", torch.tensor(float("nan")))  # nan: no reward seen yet
        self._logp_TK: torch.Tensor | None = None

    def route(self, logits_TE: torch.Tensor, **ctx: torch.Tensor | None) -> RouterOutput:
        logp_TE = logits_TE.log_softmax(dim=-1)  # float32
        if self.training:
            u_TE = torch.rand_like(logp_TE).clamp_(1e-20, 1.0)
            gumbel_TE = -torch.log(-torch.log(u_TE))
            ids_TK = (logp_TE.detach() + gumbel_TE).topk(self.top_k, dim=-1).indices
        else:
            ids_TK = logp_TE.detach().topk(self.top_k, dim=-1).indices
        chosen_TK = logp_TE.gather(-1, ids_TK)
        p_TK = chosen_TK.exp()
        gates_TK = p_TK / p_TK.sum(dim=-1, keepdim=True)
        if self.training:
            # Plackett-Luce: slot k drew from the mass left after slots < k
            K = self.top_k  # (a matmul: float cumsum has no deterministic CUDA kernel)
            taken_TK = p_TK @ torch.ones(K, K, device=p_TK.device).triu(diagonal=1)
            self._logp_TK = chosen_TK - torch.log1p(-taken_TK.clamp(max=1 - 1e-6))
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=logp_TE.exp())

    def reinforce_loss(self, reward_T: torch.Tensor) -> torch.Tensor:
        """REINFORCE surrogate for the last training forward; reward_T (T,), higher is better."""
        if self._logp_TK is None:
            raise RuntimeError("reinforce_loss needs a training-mode forward first")
        if reward_T.shape != self._logp_TK.shape[:1]:
            raise ValueError(f"reward_T has shape {tuple(reward_T.shape)}, "
                             f"expected ({self._logp_TK.shape[0]},) = one per routed token")
        r_T = reward_T.detach().float()
        with torch.no_grad():
            if torch.isnan(self.baseline):
                self.baseline.copy_(r_T.mean())
            b = self.baseline.clone()
            m = self.cfg.baseline_momentum
            self.baseline.mul_(m).add_((1 - m) * r_T.mean())
        return -((r_T - b) * self._logp_TK.sum(dim=-1)).mean()
