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

from ablate.config.domains import below_one, described, in_range, non_negative, one_of, positive
from ablate.models.moe.routers.base import RouterConfig
from ablate.registry import GATES, ROUTERS, SCORES, SELECTIONS

NOISES = ("none", "learned")
BALANCES = ("none", "bias")
GROUP_SCORES = ("max", "top2sum")


@dataclass
class RoutingConfig(RouterConfig):
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
    capacity_factor: float = positive(1.0, help="c: experts per token on average (each expert "
                                      "takes c*T/E tokens)")
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
