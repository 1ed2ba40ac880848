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

from ablate.config.domains import below_one, in_range, non_negative, one_of, positive
from ablate.models.moe.routers.base import RouterConfig
from ablate.registry import GATES, ROUTERS, SCORES, SELECTIONS

NOISES = ("none", "learned")
BALANCES = ("none", "bias")
GROUP_SCORES = ("max", "top2sum")


@dataclass
class RoutingConfig(RouterConfig):
    name: str = one_of("softmax_topk", ROUTERS.names)
    # -- the parts ---------------------------------------------------------------------
    # softmax | sigmoid | none (no learned router: hash)
    score: str = one_of("softmax", SCORES.names)
    # none | learned: logits + N(0,1) * softplus(x W_noise) while training
    noise: str = one_of("none", NOISES)
    # topk | group_limited | top_p | hash | expert_choice | sinkhorn | sample | soft
    select: str = one_of("topk", SELECTIONS.names)
    gate: str = one_of("auto", GATES.names)  # auto | prob | straight_through | uniform (gates/)
    normalize: bool = True  # renormalise the kept gates to sum to 1 over the token's slots
    scale: float = positive(1.0)  # routed scaling factor on every gate (DeepSeek-V3: 2.5)
    # none | bias: aux-loss-free balancing (DeepSeek-V3), selection only
    balance: str = one_of("none", BALANCES)
    # balance=bias: b_i += rate * sign(mean load - load_i)
    bias_update_rate: float = non_negative(0.001)
    # -- options of the selections ---------------------------------------------------------
    n_groups: int = positive(4)  # group_limited: G groups of contiguous experts ("devices")
    topk_groups: int = positive(2)  # group_limited: M groups a token may reach
    group_score: str = one_of("max", GROUP_SCORES)  # group_limited: max (V2) | top2sum (V3)
    p: float = in_range(0.5, 0, 1, low_open=True)  # top_p: cumulative probability to reach
    max_k: int = non_negative(0)  # top_p: at most this many experts per token (0 = all E)
    capacity_factor: float = positive(1.0)  # expert_choice: c, experts per token on average
    # expert_choice: at eval each token takes its own top-round(c) experts (causal), so the
    # validation loss is free of the training-time leak of future tokens
    eval_token_choice: bool = False
    sinkhorn_iters: int = non_negative(8)  # sinkhorn (BASE layers): balancing iterations
    baseline_momentum: float = below_one(0.9)  # sample (REINFORCE): EMA of the mean reward
    policy_weight: float = non_negative(1.0)  # sample (REINFORCE): policy-gradient loss weight


# keys read by the router whatever its parts (the rest belong to one part each)
COMMON_KEYS = ("name", "init", "init_std", "jitter", "score", "noise", "select", "gate", "scale",
               "balance")
