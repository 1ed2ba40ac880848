"""The composed router's config: one flat dataclass, every part and every part's options,
and the named routers, each a bundle of parts: this dataclass with other defaults.

`model.moe.router.name` picks the bundle; any key can be set on top of any name, so a new
combination is YAML, e.g. DeepSeek-V3's routing:

    model.moe.router: {name: sigmoid, select: group_limited, n_groups: 8, topk_groups: 4,
                       group_score: top2sum, scale: 2.5}

Keys stay flat (`model.moe.router.n_groups`, not `...select.n_groups`) so that every sweep
file written for the single-file routers still means the same. An option of a part that
the router does not use must stay at the name's default: `ComposedRouter` refuses it
(a setting that silently does nothing would make two arms look different when they are not).
Model presets (`ablate/config/presets/moe/`) name a bundle and set more keys; `composed.py`
registers every bundle below as a router name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.config.domains import below_one, described, in_range, non_negative, one_of, positive
from ablate.config.schema import RouterConfig
from ablate.registry import GATES, ROUTERS, SCORES, SELECTIONS

NOISES = ("none", "learned")
BALANCES = ("none", "bias")
GROUP_SCORES = ("max", "top2sum")


@dataclass
class ComposedRouterConfig(RouterConfig):
    name: str = one_of("softmax_topk", ROUTERS.names,
                       help="the named router: a bundle of parts (each key below can override it)")
    # -- the parts ---------------------------------------------------------------------
    score: str = one_of("softmax", SCORES.names, help="how logits become per-expert affinities: "
                        "softmax | sigmoid | none (no learned router: hash)")
    noise: str = one_of("none", NOISES, help="none | learned: logits + N(0,1) * softplus(x "
                        "W_noise) while training (Shazeer et al. 2017)")
    select: str = one_of("topk", SELECTIONS.names, help="which experts each token goes to "
                         "(topk, group_limited, top_p, hash, expert_choice, sinkhorn, ...)")
    gate: str = one_of("auto", GATES.names, help="how much of each chosen expert's output a "
                       "token takes: auto | prob | scaled_prob | straight_through | uniform")
    normalize: bool = described(True, "renormalise the kept gates to sum to 1 over the "
                                "token's slots")
    scale: float = positive(1.0, help="routed scaling factor on every gate (DeepSeek-V3: 2.5)")
    balance: str = one_of("none", BALANCES, help="none | bias: aux-loss-free balancing "
                          "(DeepSeek-V3), steers selection only")
    bias_update_rate: float = non_negative(0.001, help="balance=bias only: b_i += rate * "
                                           "sign(mean load - load_i) after each step")
    # -- options of the selections ---------------------------------------------------------
    n_groups: int = positive(4, help="G groups of contiguous experts (\"devices\")")
    topk_groups: int = positive(2, help="M groups a token may reach")
    group_score: str = one_of("max", GROUP_SCORES, help="a group's score: max (DeepSeek-V2) | "
                              "top2sum (V3)")
    p: float = in_range(0.5, 0, 1, low_open=True, help="cumulative probability a token's "
                        "experts must reach")
    max_k: int = non_negative(0, help="at most this many experts per token (0 = all E)")
    experts_per_token: float = positive(1.0, help="c, expert choice's capacity factor: experts "
                                        "per token on average (each expert takes c*T/E tokens)")
    # at eval each token takes its own top-round(c) experts (causal), so the validation loss
    # is free of the training-time leak of future tokens
    eval_token_choice: bool = described(False, "at evaluation each token takes its own "
                                        "top-round(c) experts (causal: no leak of later tokens)")
    sinkhorn_iters: int = non_negative(8, help="balancing iterations (BASE layers)")
    baseline_momentum: float = below_one(0.9, help="EMA momentum of the mean reward "
                                         "(REINFORCE baseline)")
    policy_weight: float = non_negative(1.0, help="weight of the policy-gradient loss "
                                        "(REINFORCE)")


# keys read by the router whatever its parts (the rest belong to one part each)
COMMON_KEYS = ("name", "init", "init_std", "jitter", "score", "noise", "select", "gate", "scale",
               "balance")


# -- the named routers ----------------------------------------------------------------------
@dataclass
class SoftmaxTopKConfig(ComposedRouterConfig):
    """p = softmax(u); top-K of p; gate = p_i, renormalised over the K (Switch K=1 gates
    with the raw p_i: `normalize: false`; GShard, DeepSeek-V1/V2, Qwen, OLMoE)."""

    name: str = "softmax_topk"


@dataclass
class TopKSoftmaxConfig(ComposedRouterConfig):
    """Top-K of u, softmax over the K kept (Mixtral; Shazeer et al. 2017 without noise):
    equal to softmax_topk with `normalize: true`, since softmax is monotone and the
    partition function cancels in p_i / sum_K p_j."""

    name: str = "topk_softmax"


@dataclass
class NoisyTopKConfig(ComposedRouterConfig):
    """Shazeer et al. 2017: top-K of u + N(0,1) softplus(x W_noise), softmax over the K."""

    name: str = "noisy_topk"
    noise: str = "learned"


@dataclass
class SigmoidConfig(ComposedRouterConfig):
    """DeepSeek-V3: s = sigmoid(u); top-K of s + b; gate = s_i / sum_K s_j (x scale);
    b moved after each step by the aux-loss-free balancing rule."""

    name: str = "sigmoid"
    score: str = "sigmoid"
    balance: str = "bias"


@dataclass
class GroupLimitedConfig(ComposedRouterConfig):
    """DeepSeek-V2 device-limited routing: top-M groups by their best expert, then top-K
    inside them (`score: sigmoid`, `group_score: top2sum` and a bias give V3's)."""

    name: str = "group_limited"
    select: str = "group_limited"


@dataclass
class HashConfig(ComposedRouterConfig):
    """Roller et al. 2021: the expert is a fixed hash of the token id; no learned router."""

    name: str = "hash"
    score: str = "none"
    select: str = "hash"
    gate: str = "uniform"


@dataclass
class ExpertChoiceConfig(ComposedRouterConfig):
    """Zhou et al. 2022: each expert takes its top-C tokens; gate = p (non-causal)."""

    name: str = "expert_choice"
    select: str = "expert_choice"
    gate: str = "prob"
    normalize: bool = False


@dataclass
class BaseLayerConfig(ComposedRouterConfig):
    """BASE layers (Lewis et al. 2021; S-BASE, Clark et al. 2022): a balanced (Sinkhorn)
    assignment while training, greedy top-1 at eval; gate = sigmoid(u_i) (Lewis eq. 1)."""

    name: str = "base"
    score: str = "sigmoid"
    select: str = "sinkhorn"
    gate: str = "prob"
    normalize: bool = False


@dataclass
class ReinforceConfig(ComposedRouterConfig):
    """Clark et al. 2022 RL-R: experts sampled from softmax(u), learned by REINFORCE on
    the token's LM loss; gates renormalised over the K sampled."""

    name: str = "reinforce"
    select: str = "sample"
    gate: str = "prob"


@dataclass
class SoftConfig(ComposedRouterConfig):
    """Soft MoE (Puigcerver et al. 2023): slots are softmax mixes of a sequence's tokens."""

    name: str = "soft"
    select: str = "soft"
    gate: str = "prob"
    normalize: bool = False


@dataclass
class TopPConfig(ComposedRouterConfig):
    """Dynamic K (Huang et al. 2024): experts in order until their probability reaches p."""

    name: str = "top_p"
    select: str = "top_p"


# every named router (composed.py registers each as a `model.moe.router.name`)
BUNDLES = (SoftmaxTopKConfig, TopKSoftmaxConfig, NoisyTopKConfig, SigmoidConfig,
           GroupLimitedConfig, HashConfig, ExpertChoiceConfig, BaseLayerConfig, ReinforceConfig,
           SoftConfig, TopPConfig)
