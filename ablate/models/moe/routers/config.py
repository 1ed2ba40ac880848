"""The composed router's config: one flat dataclass, every part and every part's options.

A router name (`bundles.py`) is this dataclass with other defaults; any key can be set on
top of any name, so a new combination is YAML, e.g. DeepSeek-V3's routing:

    model.moe.router: {name: sigmoid, select: group_limited, n_groups: 8, topk_groups: 4,
                       group_score: top2sum, scale: 2.5}

Keys stay flat (`model.moe.router.n_groups`, not `...select.n_groups`) so that every sweep
file written for the single-file routers still means the same. An option of a part that
the router does not use must stay at the name's default: `ComposedRouter` refuses it
(a setting that silently does nothing would make two arms look different when they are not).
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.models.moe.routers.base import RouterConfig


@dataclass
class RoutingConfig(RouterConfig):
    name: str = "softmax_topk"
    # -- the parts ---------------------------------------------------------------------
    score: str = "softmax"  # softmax | sigmoid | none (no learned router: hash)
    noise: str = "none"  # none | learned: logits + N(0,1) * softplus(x W_noise) while training
    select: str = "topk"  # topk | group_limited | top_p | hash | expert_choice | sinkhorn | sample | soft
    gate: str = "auto"  # auto | prob | straight_through | uniform (see gates/)
    normalize: bool = True  # renormalise the kept gates to sum to 1 over the token's slots
    scale: float = 1.0  # routed scaling factor on every gate (DeepSeek-V3: 2.5)
    balance: str = "none"  # none | bias: aux-loss-free balancing (DeepSeek-V3), selection only
    bias_update_rate: float = 0.001  # balance=bias: b_i += rate * sign(mean load - load_i)
    # -- options of the selections ---------------------------------------------------------
    n_groups: int = 4  # group_limited: G groups of contiguous experts ("devices")
    topk_groups: int = 2  # group_limited: M groups a token may reach
    group_score: str = "max"  # group_limited: max (V2) | top2sum (V3)
    p: float = 0.5  # top_p: cumulative probability to reach
    max_k: int = 0  # top_p: at most this many experts per token (0 = all E)
    capacity_factor: float = 1.0  # expert_choice: c, experts per token on average
    sinkhorn_iters: int = 8  # sinkhorn (BASE layers): balancing iterations
    baseline_momentum: float = 0.9  # sample (REINFORCE): EMA of the mean reward
    policy_weight: float = 1.0  # sample (REINFORCE): weight of the policy-gradient loss


NOISES = ("none", "learned")
BALANCES = ("none", "bias")
# keys read by the router whatever its parts (the rest belong to one part each)
COMMON_KEYS = ("name", "init", "init_std", "jitter", "score", "noise", "select", "gate", "scale",
               "balance")
