"""Named routers: each a bundle of parts, i.e. `RoutingConfig` with other defaults.

`model.moe.router.name` picks the bundle; every other key of `RoutingConfig` can still be
set on top of it (`name: sigmoid, select: group_limited, scale: 2.5` is DeepSeek-V3).
Model presets (`ablate/config/presets/moe/`) name a bundle and set more keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.models.moe.routers.composed import ComposedRouter
from ablate.models.moe.routers.config import RoutingConfig
from ablate.registry import ROUTERS


@dataclass
class SoftmaxTopKConfig(RoutingConfig):
    """p = softmax(u); top-K of p; gate = p_i, renormalised over the K (Switch K=1 gates
    with the raw p_i: `normalize: false`; GShard, DeepSeek-V1/V2, Qwen, OLMoE)."""

    name: str = "softmax_topk"


@dataclass
class TopKSoftmaxConfig(RoutingConfig):
    """Top-K of u, softmax over the K kept (Mixtral; Shazeer et al. 2017 without noise):
    equal to softmax_topk with `normalize: true`, since softmax is monotone and the
    partition function cancels in p_i / sum_K p_j."""

    name: str = "topk_softmax"


@dataclass
class NoisyTopKConfig(RoutingConfig):
    """Shazeer et al. 2017: top-K of u + N(0,1) softplus(x W_noise), softmax over the K."""

    name: str = "noisy_topk"
    noise: str = "learned"


@dataclass
class SigmoidConfig(RoutingConfig):
    """DeepSeek-V3: s = sigmoid(u); top-K of s + b; gate = s_i / sum_K s_j (x scale);
    b moved after each step by the aux-loss-free balancing rule."""

    name: str = "sigmoid"
    score: str = "sigmoid"
    balance: str = "bias"


@dataclass
class GroupLimitedConfig(RoutingConfig):
    """DeepSeek-V2 device-limited routing: top-M groups by their best expert, then top-K
    inside them (`score: sigmoid`, `group_score: top2sum` and a bias give V3's)."""

    name: str = "group_limited"
    select: str = "group_limited"


@dataclass
class HashConfig(RoutingConfig):
    """Roller et al. 2021: the expert is a fixed hash of the token id; no learned router."""

    name: str = "hash"
    score: str = "none"
    select: str = "hash"
    gate: str = "uniform"


@dataclass
class ExpertChoiceConfig(RoutingConfig):
    """Zhou et al. 2022: each expert takes its top-C tokens; gate = p (non-causal)."""

    name: str = "expert_choice"
    select: str = "expert_choice"
    gate: str = "prob"
    normalize: bool = False


@dataclass
class BaseLayerConfig(RoutingConfig):
    """BASE layers (Lewis et al. 2021; S-BASE, Clark et al. 2022): a balanced (Sinkhorn)
    assignment while training, greedy top-1 at eval; gate = sigmoid(u_i) (Lewis eq. 1)."""

    name: str = "base"
    score: str = "sigmoid"
    select: str = "sinkhorn"
    gate: str = "prob"
    normalize: bool = False


@dataclass
class ReinforceConfig(RoutingConfig):
    """Clark et al. 2022 RL-R: experts sampled from softmax(u), learned by REINFORCE on
    the token's LM loss; gates renormalised over the K sampled."""

    name: str = "reinforce"
    select: str = "sample"
    gate: str = "prob"


@dataclass
class SoftConfig(RoutingConfig):
    """Soft MoE (Puigcerver et al. 2023): slots are softmax mixes of a sequence's tokens."""

    name: str = "soft"
    select: str = "soft"
    gate: str = "prob"
    normalize: bool = False


@dataclass
class TopPConfig(RoutingConfig):
    """Dynamic K (Huang et al. 2024): experts in order until their probability reaches p."""

    name: str = "top_p"
    select: str = "top_p"


for _cfg in (SoftmaxTopKConfig, TopKSoftmaxConfig, NoisyTopKConfig, SigmoidConfig,
             GroupLimitedConfig, HashConfig, ExpertChoiceConfig, BaseLayerConfig,
             ReinforceConfig, SoftConfig, TopPConfig):
    ROUTERS.register(_cfg.name, _cfg)(ComposedRouter)
