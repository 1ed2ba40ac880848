"""The router contract, and the interfaces of the parts a composed router is made of.

    logits u (T, E) --noise--> h --score--> s (T, E), probs (T, E)
    s + bias --selection--> ids (T, K)          (the bias steers selection only)
    s, ids --gate--> gates (T, K)  * scale
Legend: T tokens (batch*seq flattened), D model width, E routed experts, K slots per token
(an id of -1 is an empty slot).

`Router` is the contract: float32 logits in, (ids, gates) out, plus the hooks the layer and
the LightningModule call, each with a default here so that no code outside the routers
needs to know which router it holds. A plugin router implements `route(logits_TE, ...)`;
the built-in routers are `ComposedRouter` (`composed.py`) with parts named in the config
(`config.py`). Everything numerically delicate (float32 logits under bf16 autocast,
jitter, init) lives here once.

A part (`Score`, `Selection`, `Gate`) registers itself (`SCORES`, `SELECTIONS`, `GATES` in
`ablate.registry`) and names the config keys it reads in `options`, so the composed router
can refuse options of parts it does not use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ablate.config.schema import (  # the config layer's: MoEConfig names it
    ROUTER_INITS,
    RouterConfig,
)
from ablate.errors import ConfigError

if TYPE_CHECKING:
    from ablate.models.moe.routers.config import ComposedRouterConfig


@dataclass
class RouterOutput:
    ids_TK: torch.Tensor  # (T, K) int64 expert index per token and slot; -1 = empty slot
    gates_TK: torch.Tensor  # (T, K) float32 weight of each slot's expert output
    logits_TE: torch.Tensor | None = None  # (T, E) float32 raw logits (z-loss)
    probs_TE: torch.Tensor | None = None  # (T, E) float32 routing distribution (balance losses)
    extra_losses: dict[str, torch.Tensor] = field(default_factory=dict)  # router-owned losses
    top1_T: torch.Tensor | None = None  # (T,) the expert the router prefers (default: slot 0)

    def preferred(self) -> torch.Tensor:
        """(T,) each token's first-choice expert (routing churn is measured on it)."""
        return self.top1_T if self.top1_T is not None else self.ids_TK[:, 0]


class Router(nn.Module):
    causal: ClassVar[bool] = True  # False: a token's routing depends on later tokens
    needs_token_ids: ClassVar[bool] = False
    gives: ClassVar[tuple[str, ...]] = ("probs_TE", "logits_TE")  # what aux losses can read
    # True: the layer mixes tokens densely through `mix` (Soft MoE) rather than dispatching
    # each token to its K experts; such a layer cannot be expert-parallel
    dense_mixture: ClassVar[bool] = False

    @classmethod
    def n_params(cls, cfg: RouterConfig, d_model: int, n_experts: int) -> int:
        """Parameter count, for accounting without building the model."""
        return n_experts * d_model

    def __init__(self, cfg: RouterConfig, d_model: int, n_experts: int, top_k: int,
                 learned: bool = True):
        super().__init__()
        self.cfg, self.n_experts, self.top_k = cfg, n_experts, top_k
        if cfg.init not in ROUTER_INITS:
            raise ConfigError("model.moe.router.init", cfg.init, ", ".join(ROUTER_INITS))
        if not (math.isfinite(cfg.init_std) and cfg.init_std >= 0):
            raise ConfigError("model.moe.router.init_std", cfg.init_std, "a finite number >= 0")
        if not (math.isfinite(cfg.jitter) and 0 <= cfg.jitter < 1):
            raise ConfigError("model.moe.router.jitter", cfg.jitter, "0 <= jitter < 1")
        if learned:  # kept in float32 whatever the training precision (Zoph et al. 2022)
            self.weight = nn.Parameter(torch.empty(n_experts, d_model, dtype=torch.float32))
            self.reset_parameters()

    def reset_parameters(self) -> None:
        if not hasattr(self, "weight"):
            return
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

    # -- hooks: what the layer, the losses and the LightningModule ask of any router --------
    def mix(self, experts: nn.Module, x_BSD: torch.Tensor, route: RouterOutput,
            ids_TK: torch.Tensor) -> torch.Tensor:
        """The routed experts' output (T, D). Token choice: each token's K experts, gated.
        ids_TK: the assignments after capacity (dropped slots are -1)."""
        return experts(x_BSD.reshape(-1, x_BSD.shape[-1]), ids_TK, route.gates_TK)

    def reward_losses(self, reward_T: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
        """Losses that need the per-token reward (-LM loss), {name: (unscaled, weight)}."""
        return {}

    @property
    def device_groups(self) -> tuple[int, int] | None:
        """(G groups of contiguous experts, M groups a token may reach), if routing is
        device-limited; the `device` and `comm` losses read it."""
        return None

    def after_step(self, load_E: torch.Tensor) -> None:
        """Called once per optimizer step with the step's expert load (bias balancing)."""

    def stats(self) -> dict[str, float]:
        """Extra routing diagnostics for the stats callback, e.g. {"bias_norm": ...}."""
        return {}

    def learned_weights(self) -> list[nn.Parameter]:
        """The parameters the LM loss should train (the learnability probe reads them)."""
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def learns_from(self) -> str:
        """"lm": the LM loss reaches the learned weights (probed before training);
        "policy": they learn from `reward_losses`; "nothing": no learned weights (hash)."""
        return "lm" if self.learned_weights() else "nothing"

    def frozen_reason(self) -> str | None:
        """If this configuration cannot pass LM gradient to the router, the config keys
        that cause it (one line); None otherwise. Checked before anything is built."""
        return None


# -- the parts ------------------------------------------------------------------------
class Score:
    """h (T, E) float32 -> (s, probs): s the per-expert affinity the gates are made of,
    probs a distribution over the E experts for balance losses and entropy."""

    options: ClassVar[tuple[str, ...]] = ()
    learned: ClassVar[bool] = True  # False: no logits at all (hash routing)

    def __call__(self, h_TE: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Selection(nn.Module):
    """Which experts each token goes to. Never differentiable: `sel_TE` is detached.

    forward(sel_TE, s_TE=..., logits_TE=..., token_ids_T=...) -> ids (T, k_out) int64.
    sel_TE = s + bias (the selection scores); s_TE carries gradient (REINFORCE needs it)."""

    options: ClassVar[tuple[str, ...]] = ()
    causal: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = True
    needs_token_ids: ClassVar[bool] = False
    dense_mixture: ClassVar[bool] = False
    varies_k: ClassVar[bool] = False  # the number of experts per token differs per token
    needs_distribution: ClassVar[bool] = False  # reads the scores as probabilities (softmax)
    learns_from: ClassVar[str] = "lm"  # "policy": the router learns from reward_losses
    reward_loss_names: ClassVar[tuple[str, ...]] = ()  # the keys reward_losses returns

    def __init__(self, cfg: ComposedRouterConfig, n_experts: int, top_k: int):
        super().__init__()
        self.cfg, self.n_experts, self.top_k = cfg, n_experts, top_k

    def forward(self, sel_TE: torch.Tensor | None, **ctx: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def reward_losses(self, reward_T: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
        return {}

    @property
    def device_groups(self) -> tuple[int, int] | None:
        return None


class Gate:
    """(s_TE, ids_TK) -> gates (T, K) float32; an empty slot (-1) gets 0."""

    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: ComposedRouterConfig, k: int):
        self.cfg, self.k = cfg, k

    def __call__(self, s_TE: torch.Tensor | None, ids_TK: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def constant(self) -> bool:
        """True when the gate's value cannot depend on the scores (no gradient reaches them)."""
        return False


def kept_scores(s_TE: torch.Tensor, ids_TK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s at each slot's expert, 0 at empty slots; the mask of kept slots), both (T, K)."""
    kept_TK = ids_TK >= 0
    s_TK = s_TE.gather(-1, ids_TK.clamp_min(0))
    return torch.where(kept_TK, s_TK, 0.0), kept_TK


def renormalise(g_TK: torch.Tensor) -> torch.Tensor:
    """g / sum over the slots (1e-20 keeps a row of zeros finite, as DeepSeek-V3 does)."""
    return g_TK / (g_TK.sum(dim=-1, keepdim=True) + 1e-20)
