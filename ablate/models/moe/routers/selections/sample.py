"""REINFORCE routing (Bengio et al. 2013; Clark et al. 2022 "Unified Scaling Laws", RL-R).

Training: sample K distinct experts from p = s (a softmax score): Gumbel-top-K (Kool et
al. 2019: the top-K of log p + Gumbel noise is a sample without replacement); eval: top-K.
The selection is discrete, so the router learns from the policy gradient
    L = -mean_t (r_t - b) * log pi(ids_t),   b = EMA of the mean reward,
with r_t = -(the token's LM loss), which only the LightningModule has: it calls
`reward_losses(reward_T)` after the forward. log pi is the Plackett-Luce probability of the
ordered sample (slot k drew from the mass the earlier slots left).
"""

from __future__ import annotations

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Selection
from ablate.registry import SELECTIONS


@SELECTIONS.register("sample")
class Sample(Selection):
    options = ("baseline_momentum", "policy_weight")
    learns_from = "policy"
    reward_loss_names = ("reinforce",)
    needs_distribution = True

    def __init__(self, cfg, n_experts: int, top_k: int):
        super().__init__(cfg, n_experts, top_k)
        if not 0 <= cfg.baseline_momentum < 1:
            raise ConfigError("model.moe.router.baseline_momentum", cfg.baseline_momentum,
                              "0 <= m < 1")
        if not cfg.policy_weight >= 0:
            raise ConfigError("model.moe.router.policy_weight", cfg.policy_weight, "a number >= 0")
        self.register_buffer("baseline", torch.tensor(float("nan")))  # nan: no reward seen yet
        self._logp_TK: torch.Tensor | None = None

    def forward(self, sel_TE: torch.Tensor, **ctx: torch.Tensor | None) -> torch.Tensor:
        s_TE = ctx["s_TE"]
        logp_TE = s_TE.clamp_min(1e-30).log()
        if not self.training:
            return sel_TE.topk(self.top_k, dim=-1).indices
        u_TE = torch.rand_like(logp_TE).clamp_(1e-20, 1.0)
        gumbel_TE = -torch.log(-torch.log(u_TE))
        ids_TK = (logp_TE.detach() + gumbel_TE).topk(self.top_k, dim=-1).indices
        chosen_TK = logp_TE.gather(-1, ids_TK)
        K = self.top_k  # mass taken by earlier slots; a matmul (no deterministic CUDA cumsum)
        taken_TK = chosen_TK.exp() @ torch.ones(K, K, device=s_TE.device).triu(diagonal=1)
        self._logp_TK = chosen_TK - torch.log1p(-taken_TK.clamp(max=1 - 1e-6))
        return ids_TK

    def reward_losses(self, reward_T: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
        """{"reinforce": (surrogate loss of the last training forward, policy_weight)};
        reward_T (T,), higher is better."""
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
        loss = -((r_T - b) * self._logp_TK.sum(dim=-1)).mean()
        return {"reinforce": (loss, self.cfg.policy_weight)}
