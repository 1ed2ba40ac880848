"""The composed router: a score, a selection, a gate, optional noise and balancing state.

    u = x W_r^T (float32)      h = u (+ learned noise)      s, probs = score(h)
    sel = s.detach() + b       ids = selection(sel)         gates = gate(s, ids) * scale
Legend: T tokens, D width, E experts, K slots per token. Every named router (`config.py`)
is this class with other config defaults; the scores and gates are in `scores.py` and
`gates.py`, each selection in `selections/`, the noise and the bias balancing below.

Learned routing noise (Shazeer et al. 2017, "Outrageously Large Neural Networks", eq. 4):

    H(x) = u + N(0, 1) * softplus(x W_noise)     while training; H = u at eval

W_noise (E, D) is learned and starts at 0 (softplus(0) ~ 0.69); the z-loss keeps reading
the clean logits u.

Aux-loss-free load balancing (DeepSeek-V3 arXiv 2412.19437 §2.1.2; Wang et al. 2024): a
per-expert bias b is added to the selection scores only (top-K and group ranking), never to
the gates, and moves after every optimizer step against the load:

    b_i += gamma * sign(mean(load) - load_i)      (gamma = bias_update_rate)

b is a float32 buffer (saved with checkpoints, no gradient); gamma = 0 keeps it at 0.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ablate.errors import ConfigError
from ablate.models.moe.routers.base import Router, RouterOutput
from ablate.models.moe.routers.config import (
    BALANCES,
    BUNDLES,
    COMMON_KEYS,
    NOISES,
    ComposedRouterConfig,
)
from ablate.registry import GATES, ROUTERS, SCORES, SELECTIONS

KEY = "model.moe.router."
# checkpoints of the single-file routers (before composition) named their state so
_OLD_KEYS = {"bias": "balance.bias", "w_noise": "noise.w_noise", "baseline": "select.baseline"}


class ComposedRouter(Router):
    options: tuple[str, ...] = ()  # config keys a subclass adds (checked like the parts')

    @classmethod
    def n_params(cls, cfg: ComposedRouterConfig, d_model: int, n_experts: int) -> int:
        learned = SCORES.get(cfg.score).obj.learned
        return n_experts * d_model * (int(learned) + int(cfg.noise == "learned"))

    def __init__(self, cfg: ComposedRouterConfig, d_model: int, n_experts: int, top_k: int):
        score = SCORES.get(cfg.score).obj()
        super().__init__(cfg, d_model, n_experts, top_k, learned=score.learned)
        self.score = score
        self.select = SELECTIONS.get(cfg.select).obj(cfg, n_experts, top_k)
        self.k_slots = getattr(self.select, "k_out", n_experts if self.select.varies_k else top_k)
        self.gate = GATES.get(cfg.gate).obj(cfg, self.k_slots)
        _check(cfg, self)
        self.noise = LearnedNoise(d_model, n_experts) if cfg.noise == "learned" else None
        self.balance = (BiasBalance(n_experts, cfg.bias_update_rate) if cfg.balance == "bias"
                        else None)
        # what the layer and the config checks read (class-level defaults in Router)
        self.causal = self.select.causal
        self.needs_token_ids = self.select.needs_token_ids
        self.dense_mixture = self.select.dense_mixture
        self.gives = ("probs_TE", "logits_TE") if score.learned else ()

    def forward(self, x_TD: torch.Tensor, token_ids_T: torch.Tensor | None = None) -> RouterOutput:
        logits_TE = s_TE = probs_TE = sel_TE = None
        if self.score.learned:
            logits_TE = self.logits(x_TD)
            h_TE = self.noise(logits_TE, x_TD) if self.noise is not None else logits_TE
            s_TE, probs_TE = self.score(h_TE)
            sel_TE = s_TE.detach()
            if self.balance is not None:  # the bias steers selection only, never the gate
                sel_TE = sel_TE + self.balance.bias
        ids_TK = self.select(sel_TE, s_TE=s_TE, logits_TE=logits_TE, token_ids_T=token_ids_T)
        gates_TK = self.gate(s_TE, ids_TK).float()
        if self.cfg.scale != 1.0:
            gates_TK = gates_TK * self.cfg.scale
        top1_T = sel_TE.argmax(dim=-1) if sel_TE is not None else None
        return RouterOutput(ids_TK, gates_TK, logits_TE=logits_TE, probs_TE=probs_TE, top1_T=top1_T)

    # -- the hooks of `Router`, answered by the parts -------------------------------------
    def mix(self, experts, x_BSD, route, ids_TK):
        if self.select.dense_mixture:
            return self.select.mix(experts, x_BSD, route.logits_TE)
        return super().mix(experts, x_BSD, route, ids_TK)

    def reward_losses(self, reward_T):
        return self.select.reward_losses(reward_T)

    @property
    def device_groups(self):
        return self.select.device_groups

    def after_step(self, load_E: torch.Tensor) -> None:
        if self.balance is not None:
            self.balance.update(load_E)

    def stats(self) -> dict[str, float]:
        return {"bias_norm": float(self.balance.bias.norm())} if self.balance is not None else {}

    @property
    def learns_from(self) -> str:
        if not self.learned_weights():
            return "nothing"
        return self.select.learns_from

    def frozen_reason(self) -> str | None:
        if self.learns_from != "lm" or not self.gate.constant():
            return None
        c = self.cfg
        if c.gate == "uniform":
            return f"{KEY}gate=uniform: the gates ignore the router's scores"
        return (f"{KEY}gate={c.gate} with {KEY}normalize=true and one expert per token "
                f"(top_k*granularity={self.k_slots}): every gate is exactly 1")

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if getattr(self, "noise", None) is not None:  # the base __init__ runs before it exists
            self.noise.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for old, new in _OLD_KEYS.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _check(cfg: ComposedRouterConfig, router: ComposedRouter) -> None:
    """Combinations of parts that cannot work, and options no part of this router reads."""
    score, select = router.score, router.select
    if cfg.noise not in NOISES:
        raise ConfigError(KEY + "noise", cfg.noise, ", ".join(NOISES))
    if cfg.balance not in BALANCES:
        raise ConfigError(KEY + "balance", cfg.balance, ", ".join(BALANCES))
    if not (math.isfinite(cfg.scale) and cfg.scale > 0):
        raise ConfigError(KEY + "scale", cfg.scale, "a finite number > 0")
    if not score.learned:
        for key, value, ok in (("select", cfg.select, not select.needs_scores),
                               ("gate", cfg.gate, cfg.gate == "uniform"),
                               ("noise", cfg.noise, cfg.noise == "none"),
                               ("balance", cfg.balance, cfg.balance == "none")):
            if not ok:
                raise ConfigError(KEY + key, value, f"a {key} that needs no scores with "
                                  f"{KEY}score=none", "score=none gives no scores")
    if getattr(select, "needs_distribution", False) and cfg.score != "softmax":
        raise ConfigError(KEY + "score", cfg.score, f"softmax with {KEY}select={cfg.select}",
                          "this selection reads the scores as a probability distribution")
    used = set(COMMON_KEYS) | set(select.options) | set(router.gate.options) | set(router.options)
    if cfg.balance == "bias":
        used.add("bias_update_rate")
    defaults = type(cfg)()
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name not in used and value != getattr(defaults, f.name):
            raise ConfigError(KEY + f.name, value, f"the default ({getattr(defaults, f.name)!r}) "
                              f"with select={cfg.select}, gate={cfg.gate}, balance={cfg.balance}",
                              "not used by this router")


class LearnedNoise(nn.Module):
    """h = u + N(0, 1) * softplus(x W_noise) while training (the module docstring)."""

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


class BiasBalance(nn.Module):
    """The aux-loss-free bias b (E,), moved by `update` after each step (the module docstring)."""

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


for _cfg in BUNDLES:  # every named router is this class with its bundle's defaults
    ROUTERS.register(_cfg.name, _cfg)(ComposedRouter)
