"""Expert capacity: keep at most C = ceil(T*K/E * cf) assignments per expert, drop the rest.

Legend: T tokens, K slots per token, E experts, N = T*K assignments.

A dropped assignment gets id -1: the experts skip it (its update is zero) and the residual
stream carries the token unchanged. Who survives an overflow (`priority`):
- "position": GShard order, all first choices before any second choice, and within a slot
  earlier tokens (lower t) first (Lepikhin et al. 2020; Switch, Fedus et al. 2022).
- "score": Batch Prioritized Routing, the highest router scores win over the whole batch
  (Riquelme et al. 2021); ties go to the position order.
Ids already -1 on input stay dropped and use no capacity.
"""

from __future__ import annotations

import math

import torch

PRIORITIES = ("position", "score")


def expert_capacity(n_tokens: int, top_k: int, n_experts: int, capacity_factor: float) -> int:
    """C = ceil(T*K/E * cf)."""
    return math.ceil(n_tokens * top_k / n_experts * capacity_factor)


def _priority_order(ids_TK: torch.Tensor, scores_TK: torch.Tensor, priority: str) -> torch.Tensor:
    """Indices into the flattened (K, T) slot-major assignments, most important first."""
    if priority == "position":
        return torch.arange(ids_TK.numel(), device=ids_TK.device)
    if priority == "score":
        return torch.argsort(scores_TK.t().reshape(-1), descending=True, stable=True)
    raise ValueError(f"drop priority must be one of {PRIORITIES}, got {priority!r}")


def apply_capacity(
    ids_TK: torch.Tensor,
    gates_TK: torch.Tensor,
    scores_TK: torch.Tensor | None,
    n_experts: int,
    capacity_factor: float | None,
    priority: str = "position",
) -> torch.Tensor:
    """ids (T, K) -> ids (T, K) with overflow assignments set to -1.

    scores: the ranking for priority="score" (default: the gates). cf None: dropless, the
    ids come back unchanged. Vectorised: one stable sort by expert of the assignments in
    priority order gives each its rank inside its expert; rank >= C is dropped.
    """
    if capacity_factor is None:
        return ids_TK
    T, K = ids_TK.shape
    cap = expert_capacity(T, K, n_experts, capacity_factor)
    scores_TK = gates_TK if scores_TK is None else scores_TK
    prio_N = _priority_order(ids_TK, scores_TK.detach(), priority)
    ids_N = ids_TK.t().reshape(-1)[prio_N]  # (N,) assignments, most important first
    key_N = torch.where(ids_N >= 0, ids_N, n_experts)  # already dropped: a bin of its own
    by_expert_N = torch.argsort(key_N, stable=True)  # keeps priority order inside an expert
    counts_E = torch.bincount(key_N, minlength=n_experts + 1)
    starts_E = counts_E.cumsum(0) - counts_E
    rank_sorted_N = torch.arange(key_N.numel(), device=key_N.device) - starts_E[key_N[by_expert_N]]
    rank_N = torch.empty_like(rank_sorted_N).scatter_(0, by_expert_N, rank_sorted_N)
    kept_N = torch.where((rank_N < cap) & (ids_N >= 0), ids_N, -1)
    out_N = torch.empty_like(kept_N).scatter_(0, prio_N, kept_N)  # undo the priority order
    return out_N.view(K, T).t()


def apply_capacity_reference(
    ids_TK: torch.Tensor,
    gates_TK: torch.Tensor,
    scores_TK: torch.Tensor | None,
    n_experts: int,
    capacity_factor: float | None,
    priority: str = "position",
) -> torch.Tensor:
    """The obvious loop, for tests: visit assignments in priority order, fill each expert."""
    if capacity_factor is None:
        return ids_TK
    T, K = ids_TK.shape
    cap = expert_capacity(T, K, n_experts, capacity_factor)
    scores = (gates_TK if scores_TK is None else scores_TK).tolist()
    slots = [(t, k) for k in range(K) for t in range(T)]  # GShard: slot 0 of every token first
    if priority == "score":
        slots.sort(key=lambda tk: -scores[tk[0]][tk[1]])  # stable: ties keep position order
    elif priority != "position":
        raise ValueError(f"drop priority must be one of {PRIORITIES}, got {priority!r}")
    out = ids_TK.clone()
    used = [0] * n_experts
    for t, k in slots:
        e = int(ids_TK[t, k])
        if e < 0:
            continue
        if used[e] < cap:
            used[e] += 1
        else:
            out[t, k] = -1
    return out
