"""Routed experts: stacked SwiGLU weights and dropless dispatch.

Legend: T tokens, D model width, H expert hidden width, E experts, K slots per token,
N = T*K routed (token, expert) assignments.

Fast path (`dispatch="grouped"`): sort the N assignments by expert, gather the token rows
once, run every expert as one grouped GEMM over contiguous segments
(`torch.nn.functional.grouped_mm`), scale by the gates and scatter-add back. Memory is
O(N*D + N*H); nothing is padded to a capacity. Where `grouped_mm` is missing or the
shapes break its 16-byte stride rule, the same segments run as a loop over `unbind`-ed
weights, whose backward stacks the per-expert gradients once (slicing `w[e]` in a loop
would materialise a full (E, D, H) gradient per expert).

Reference (`dispatch="loop"`): the obvious per-expert loop with boolean masks, kept to
test the fast path against.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

_HAS_GROUPED_MM = hasattr(F, "grouped_mm")


def _segment_mm(x_ND: torch.Tensor, w_EDH: torch.Tensor, counts_E: list[int], offs_E: torch.Tensor):
    """Row segments of x (sorted by expert) times their expert's matrix: (N, D) -> (N, H)."""
    aligned = (w_EDH.shape[1] * x_ND.element_size()) % 16 == 0 and (
        w_EDH.shape[2] * x_ND.element_size()
    ) % 16 == 0
    if _HAS_GROUPED_MM and aligned and x_ND.dtype == w_EDH.dtype:
        return F.grouped_mm(x_ND, w_EDH, offs=offs_E)
    parts = [xs @ w for xs, w in zip(x_ND.split(counts_E), w_EDH.unbind(0))]
    return torch.cat(parts) if parts else x_ND.new_zeros(0, w_EDH.shape[2])


class RoutedExperts(nn.Module):
    """E SwiGLU experts D -> H -> D stored as stacked (E, D, H) / (E, H, D) weights."""

    def __init__(self, n_experts: int, d_model: int, d_hidden: int, dispatch: str = "grouped"):
        super().__init__()
        self.n_experts, self.dispatch = n_experts, dispatch
        self.w1 = nn.Parameter(torch.empty(n_experts, d_model, d_hidden))
        self.w3 = nn.Parameter(torch.empty(n_experts, d_model, d_hidden))
        self.w2 = nn.Parameter(torch.empty(n_experts, d_hidden, d_model))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        for w in (self.w1, self.w3, self.w2):
            nn.init.normal_(w, std=std)

    def forward(self, x_TD: torch.Tensor, ids_TK: torch.Tensor, gates_TK: torch.Tensor) -> torch.Tensor:
        """x (T, D), ids (T, K) in [0, E) or -1 for a dropped slot, gates (T, K) -> y (T, D)."""
        if self.dispatch == "loop":
            return self.forward_loop(x_TD, ids_TK, gates_TK)
        return self.forward_grouped(x_TD, ids_TK, gates_TK)

    def forward_grouped(self, x_TD, ids_TK, gates_TK) -> torch.Tensor:
        T, K = ids_TK.shape
        flat_ids_N = ids_TK.reshape(-1)
        keep_N = flat_ids_N >= 0  # dropped slots (capacity) carry id -1
        order_N = torch.argsort(torch.where(keep_N, flat_ids_N, self.n_experts), stable=True)
        n_kept = int(keep_N.sum())
        order_N = order_N[:n_kept]  # kept assignments, grouped by expert
        counts_E = torch.bincount(flat_ids_N[order_N], minlength=self.n_experts)
        offs_E = counts_E.cumsum(0).to(torch.int32)
        counts = counts_E.tolist()
        token_N = order_N // K  # source token of each sorted assignment
        x_ND = x_TD[token_N]  # (N, D) gathered once
        w1, w3, w2 = (w.to(x_TD.dtype) for w in (self.w1, self.w3, self.w2))
        h_NH = F.silu(_segment_mm(x_ND, w1, counts, offs_E)) * _segment_mm(x_ND, w3, counts, offs_E)
        y_ND = _segment_mm(h_NH, w2, counts, offs_E)
        y_ND = y_ND * gates_TK.reshape(-1)[order_N].unsqueeze(-1).to(y_ND.dtype)
        return x_TD.new_zeros(T, x_TD.shape[1]).index_add_(0, token_N, y_ND)

    def forward_loop(self, x_TD, ids_TK, gates_TK) -> torch.Tensor:
        """Reference: for each expert, find its tokens, run its FFN, add the gated output."""
        y_TD = torch.zeros_like(x_TD)
        for e in range(self.n_experts):
            tok, slot = torch.nonzero(ids_TK == e, as_tuple=True)
            if tok.numel() == 0:
                continue
            xe = x_TD[tok]
            h = F.silu(xe @ self.w1[e].to(xe.dtype)) * (xe @ self.w3[e].to(xe.dtype))
            ye = (h @ self.w2[e].to(xe.dtype)) * gates_TK[tok, slot].unsqueeze(-1).to(xe.dtype)
            y_TD = y_TD.index_add(0, tok, ye)
        return y_TD


