"""What every aux loss shares: the context it receives, the `needs` declaration, and the
counting helpers (assignment counts, expert fractions, per-device sums).

Shapes: T tokens, E routed experts, K slots per token (an id of -1 is an empty slot:
expert choice, top-p, capacity drops), D devices (contiguous groups of E/D experts).
"""

from __future__ import annotations

import torch

from ablate.models.moe.aux_context import AuxContext  # noqa: F401 - the losses' input, re-exported


def needs(*attrs: str):
    """Declare which RouterOutput fields a loss reads, so configs are checked up front."""

    def deco(fn):
        fn.needs = attrs
        return fn

    return deco


def need(ctx: AuxContext, attr: str, loss: str) -> torch.Tensor:
    """The router's `attr`, or a ValueError naming the loss that needs it."""
    value = getattr(ctx.route, attr)
    if value is None:
        raise ValueError(f"aux loss {loss!r} needs router {attr}, which this router does not give")
    return value


def counts(ids_NK: torch.Tensor, n: int) -> torch.Tensor:
    """(..., N, K) ids in [-1, n) -> (..., n) float assignment counts; -1 is not counted."""
    flat = ids_NK.flatten(-2)
    flat = torch.where(flat >= 0, flat, n)  # -1 -> an overflow bin, cut off below
    out = torch.zeros(*flat.shape[:-1], n + 1, device=flat.device)
    return out.scatter_add_(-1, flat, torch.ones_like(flat, dtype=out.dtype))[..., :n]


def expert_fraction(ids_TK: torch.Tensor, n_experts: int) -> torch.Tensor:
    """f_E: fraction of the T*K assignments that went to each expert (no gradient).
    Empty slots (-1) are not assignments: f sums to 1 over the kept ones."""
    counts_E = counts(ids_TK, n_experts)
    return counts_E / counts_E.sum().clamp_min(1.0)


def per_device(x_E: torch.Tensor, n_devices: int) -> torch.Tensor:
    """(..., E) -> (D,) sums over each device's contiguous experts; D must divide E."""
    E = x_E.shape[-1]
    if n_devices < 1 or E % n_devices:
        raise ValueError(f"n_devices={n_devices} must divide the {E} routed experts")
    return x_E.view(n_devices, E // n_devices).sum(-1)  # (D,): experts are contiguous per device
