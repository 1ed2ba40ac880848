"""The composed router: a score, a selection, a gate and optional balancing state.

    u = x W_r^T (float32)      h = u (+ learned noise)      s, probs = score(h)
    sel = s.detach() + b       ids = selection(sel)         gates = gate(s, ids) * scale
Legend: T tokens, D width, E experts, K slots per token. Every named router (`bundles.py`)
is this class with other config defaults; the parts are small registered files
(`scores/`, `selections/`, `gates/`, `noise.py`, `balance.py`).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ablate.errors import ConfigError
from ablate.models.moe.routers.balance import BiasBalance
from ablate.models.moe.routers.base import Router, RouterOutput
from ablate.models.moe.routers.config import BALANCES, COMMON_KEYS, NOISES, RoutingConfig
from ablate.models.moe.routers.noise import LearnedNoise
from ablate.registry import GATES, SCORES, SELECTIONS

KEY = "model.moe.router."
# checkpoints of the single-file routers (before composition) named their state so
_OLD_KEYS = {"bias": "balance.bias", "w_noise": "noise.w_noise", "baseline": "select.baseline"}


class ComposedRouter(Router):
    options: tuple[str, ...] = ()  # config keys a subclass adds (checked like the parts')

    @classmethod
    def n_params(cls, cfg: RoutingConfig, d_model: int, n_experts: int) -> int:
        learned = SCORES.get(cfg.score).obj.learned
        return n_experts * d_model * (int(learned) + int(cfg.noise == "learned"))

    def __init__(self, cfg: RoutingConfig, d_model: int, n_experts: int, top_k: int):
        score = SCORES.get(cfg.score).obj()
        super().__init__(cfg, d_model, n_experts, top_k, learned=score.learned)
        self.score = score
        self.select = SELECTIONS.get(cfg.select).obj(cfg, n_experts, top_k)
        self.k_slots = getattr(self.select, "k_out", n_experts if self.select.varies_k else top_k)
        self.gate = GATES.get(cfg.gate).obj(cfg, self.k_slots)
        _check(cfg, self)
        self.noise = LearnedNoise(d_model, n_experts) if cfg.noise == "learned" else None
        self.balance = BiasBalance(n_experts, cfg.bias_update_rate) if cfg.balance == "bias" else None
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


def _check(cfg: RoutingConfig, router: ComposedRouter) -> None:
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
