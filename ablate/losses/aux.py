"""Balancing and stability losses of an MoE layer: pure keyword-only functions, registered by
name, each formula written once (its docstring and its code).

    switch      load balance (Fedus et al. 2022)                   1.0 at perfect balance
    importance  CV^2 of the experts' importance (Shazeer et al. 2017)      0 at balance
    z           router z-loss (Zoph et al. 2022, ST-MoE)
    seq_aux     switch balance per sequence (DeepSeek-V3)           1.0 at balance
    device      switch balance over devices (DeepSeek-V2)           1.0 at balance
    comm        communication balance (DeepSeek-V2)                 1.0 at balance

Shapes: T tokens, E routed experts, K slots per token (an id of -1 is an empty slot: expert
choice, top-p, capacity drops), D devices (contiguous groups of E/D experts).

`aux_loss(name, needs=...)` registers a function under `name`: the MoE layer calls it with
the fields of its `AuxContext` that the function names as keywords, multiplies the unscaled
value by `model.moe.aux.<name>`, and the LightningModule logs both apart from the LM loss.
`needs` names the router outputs it reads, so a config whose router does not give them is
refused before anything runs. A plugin can also register a function of the `AuxContext`
itself with `AUX_LOSSES.register(name)` (and `needs(...)`).
"""

from __future__ import annotations

import inspect

import torch

from ablate.models.moe.layer import AuxContext
from ablate.registry import AUX_LOSSES

__all__ = ["AuxContext", "aux_loss", "comm_loss", "device_loss", "expert_fraction",
           "importance_loss", "needs", "seq_aux_loss", "switch_loss", "z_loss"]


def needs(*attrs: str):
    """Declare which RouterOutput fields a loss of an `AuxContext` reads."""

    def deco(fn):
        fn.needs = attrs
        return fn

    return deco


def aux_loss(name: str, *, needs: tuple[str, ...]):
    """Register a keyword-only loss under `name`, called with the AuxContext's fields it names
    (probs_TE, logits_TE, ids_TK from the router's output; n_experts, n_devices, max_devices,
    batch_shape from the layer)."""

    def deco(fn):
        wanted = set(inspect.signature(fn).parameters)

        def from_context(ctx: AuxContext) -> torch.Tensor:
            for attr in needs:
                if getattr(ctx.route, attr) is None:
                    raise ValueError(f"aux loss {name!r} needs router {attr}, which this router "
                                     "does not give")
            fields = {"probs_TE": ctx.route.probs_TE, "logits_TE": ctx.route.logits_TE,
                      "ids_TK": ctx.route.ids_TK, "n_experts": ctx.n_experts,
                      "n_devices": ctx.n_devices, "max_devices": ctx.max_devices,
                      "batch_shape": ctx.batch_shape}
            return fn(**{k: v for k, v in fields.items() if k in wanted})

        from_context.needs, from_context.__doc__ = needs, fn.__doc__
        from_context.__name__ = from_context.__qualname__ = f"{name}_from_context"
        AUX_LOSSES.register(name)(from_context)
        return fn

    return deco


# -- counting ---------------------------------------------------------------------------------
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


# -- the losses -------------------------------------------------------------------------------
@aux_loss("switch", needs=("probs_TE",))
def switch_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int) -> torch.Tensor:
    """E * sum_i f_i * P_i (Fedus et al. 2022), f the fraction of assignments to expert i,
    P_i its mean router probability; 1.0 at perfect balance. Gradient flows via P."""
    return n_experts * (expert_fraction(ids_TK, n_experts) * probs_TE.mean(0)).sum()


@aux_loss("importance", needs=("probs_TE",))
def importance_loss(*, probs_TE: torch.Tensor) -> torch.Tensor:
    """CV(I)^2 with I_i = sum_t p_i(x_t) (Shazeer et al. 2017 eq. 6); 0 at balance.
    Population variance, as tensor2tensor's `cv_squared`."""
    imp_E = probs_TE.sum(0)
    return imp_E.var(unbiased=False) / (imp_E.mean().pow(2) + 1e-10)


@aux_loss("z", needs=("logits_TE",))
def z_loss(*, logits_TE: torch.Tensor) -> torch.Tensor:
    """(1/T) sum_t logsumexp(u_t)^2 (Zoph et al. 2022, ST-MoE): keeps the logits small."""
    return torch.logsumexp(logits_TE, dim=-1).pow(2).mean()


@aux_loss("seq_aux", needs=("probs_TE",))
def seq_aux_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int,
                 batch_shape: tuple[int, int]) -> torch.Tensor:
    """The switch loss of each sequence, averaged over the B sequences (DeepSeek-V3's
    complementary loss, eq. 17-20: f_i = E/(K S) * count_i, P_i = mean over the sequence's
    tokens)."""
    B, S = batch_shape
    counts_BE = counts(ids_TK.view(B, S, -1), n_experts)
    f_BE = counts_BE / counts_BE.sum(-1, keepdim=True).clamp_min(1.0)
    P_BE = probs_TE.view(B, S, n_experts).mean(1)
    return (n_experts * (f_BE * P_BE).sum(-1)).mean()


@aux_loss("device", needs=("probs_TE",))
def device_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int,
                n_devices: int) -> torch.Tensor:
    """Device-level balance (DeepSeek-V2 eq. 14-16): sum_i f'_i P'_i with
    f'_i = mean_{j in dev i} f_j (f_j = E/(K T) count_j) = D * F_i and P'_i = sum_{j in i} P_j,
    i.e. the switch loss over devices: D * sum_i F_i P'_i, 1.0 at balance."""
    F_D = per_device(expert_fraction(ids_TK, n_experts), n_devices)
    P_D = per_device(probs_TE.mean(0), n_devices)
    return n_devices * (F_D * P_D).sum()


@aux_loss("comm", needs=("probs_TE",))
def comm_loss(*, probs_TE: torch.Tensor, ids_TK: torch.Tensor, n_experts: int, n_devices: int,
              max_devices: int) -> torch.Tensor:
    """Communication balance (DeepSeek-V2 eq. 17-19): sum_i f''_i P''_i with
    f''_i = D/(M T) * #tokens sent to device i (a token counts once per device it reaches),
    P''_i = sum_{j in dev i} P_j, M = max devices per token. 1.0 when every token reaches M
    devices and devices receive equally."""
    T = ids_TK.shape[0]
    group = n_experts // n_devices
    per_device(probs_TE[:1], n_devices)  # checks that D divides E
    dev_TK = torch.where(ids_TK >= 0, ids_TK // group, n_devices)  # -1 -> overflow column
    sent_TD = torch.zeros(T, n_devices + 1, device=ids_TK.device)
    sent_TD = sent_TD.scatter_(1, dev_TK, 1.0)[:, :n_devices]  # 1 per (token, device) reached
    f_D = n_devices / (max_devices * T) * sent_TD.sum(0)
    return (f_D * per_device(probs_TE.mean(0), n_devices)).sum()
