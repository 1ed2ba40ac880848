"""Sparse upcycling (Komatsuzaki et al. 2022) as a pure function on state dicts: a trained
dense model's weights + the MoE model's config -> the MoE model's initial weights. Every
parameter outside the MoE layers is the dense one, each MoE layer's experts are made from
the dense FFN of the same block, and the router starts fresh (its keys are left out).

Legend: D model width, F dense FFN hidden width, H routed expert width, E routed experts,
n = F // H slices of the dense FFN (split), S shared hidden width (n_shared * d_shared).
Dense weights are nn.Linear's: w1, w3 (F, D) and w2 (D, F); SwiGLU is a sum over hidden
units, FFN(x) = sum_j w2[:, j] * silu(w1[j] x) * (w3[j] x), which is why slicing and
tiling hidden units are the natural moves below.
"""

from __future__ import annotations

import torch

from ablate.config.derived import moe_layer_ids
from ablate.config.schema import ModelConfig
from ablate.errors import ConfigError

ROUTER = ".ffn.router."  # an upcycled model's routers keep their own init
Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # w1, w3 (F, D), w2 (D, F)


@torch.no_grad()
def upcycle(dense_sd: dict[str, torch.Tensor], cfg: ModelConfig, mode: str = "copy",
            noise: float = 0.0, generator: torch.Generator | None = None, *,
            source: str = "dense weights") -> dict[str, torch.Tensor]:
    """The initial state dict of the MoE model `cfg` (its derived sizes resolved) from a
    dense state dict; the inputs are not changed. Keys of the routers (`ROUTER`) are absent.

    Everything outside the MoE layers is the dense model's, by name. Per MoE layer (block
    i), from the dense FFN `blocks.{i}.ffn` of width F:

    - copy: every routed expert is the dense FFN (H must equal F), plus relative noise.
      With gates that sum to 1 (renormalised gates, the default with K > 1) the routed
      output is sum_k g_k FFN(x) = FFN(x): the MoE computes the dense function exactly.
    - split (fine-grained upcycling): the F hidden units are cut into n = F/H contiguous
      slices and expert e gets slice e mod n, so with granularity m (E = m * E_coarse,
      n = m) each coarse copy c is experts c*m .. c*m+m-1. The layer is NOT the dense FFN
      at init: a token gets sum_k g_k slice_{e_k}(x), the dense FFN only if its K experts
      cover every slice once with equal gates. Routed w2 is scaled by n: with gates that
      sum to 1 and slices picked uniformly by a fresh router, E[n sum_k g_k slice] =
      n * FFN(x)/n = FFN(x), so the output scale matches the dense model in expectation
      (and exactly when k = n experts of distinct slices get gates 1/n).
    - shared expert (S hidden units): unit j := dense unit j mod F. Shared + routed would
      be 2x the dense FFN, so BOTH halves get w2 * 0.5: the layer equals the dense FFN at
      init (copy mode, normalised gates, S a multiple of F: the S/F tiled copies are also
      divided by S/F). With a Qwen shared gate, its weight is zeroed so sigmoid = 0.5 does
      the halving of the shared side instead. Other S are a magnitude-matched approximation.
    - noise (std noise * std(w), per tensor, per expert) goes on every routed expert in both
      modes, drawn from `generator` (never the global RNG) in layer, expert, w1-w3-w2 order.
    """
    if mode not in ("copy", "split"):
        raise ConfigError("init.upcycle", mode, "copy, split")
    moe_ids = moe_layer_ids(cfg)
    if not moe_ids:
        raise ConfigError("init.from_checkpoint", source, "an MoE model to upcycle into",
                          "model.ffn is dense: nothing to upcycle")
    moe_prefixes = tuple(f"blocks.{i}.ffn." for i in moe_ids)
    out = {k: v for k, v in dense_sd.items() if not k.startswith(moe_prefixes)}
    for i in moe_ids:
        out.update(_moe_layer(f"blocks.{i}.ffn.", _dense_ffn(dense_sd, i, source), cfg, mode,
                              noise, generator))
    return out


def _dense_ffn(dense_sd, i: int, source: str) -> Weights:
    keys = [f"blocks.{i}.ffn.{w}.weight" for w in ("w1", "w3", "w2")]
    missing = [k for k in keys if k not in dense_sd]
    if missing:
        raise ConfigError("init.from_checkpoint", source, "a dense model's weights",
                          f"no dense FFN for MoE block {i} ({missing[0]} missing)")
    return tuple(dense_sd[k].float() for k in keys)  # type: ignore[return-value]


def _moe_layer(prefix: str, ffn: Weights, cfg: ModelConfig, mode: str, noise: float,
               generator) -> dict[str, torch.Tensor]:
    """One MoE layer's experts (and shared expert, gate) under its state-dict names: the
    layout of `MoELayer` (ablate/models/moe/layer.py) and `RoutedExperts` (experts.py):
    experts.w13 (E, D, 2H) = [w1 | w3], experts.w2 (E, H, D); shared is a SwiGLU."""
    moe = cfg.moe
    F, H, E = ffn[0].shape[0], moe.expert_width, moe.routed_experts
    if mode == "copy" and H != F:
        raise ConfigError("init.upcycle", "copy",
                          f"split (experts of width {H} cut from the dense FFN of width {F}), "
                          f"or a dense model with d_ff={H}",
                          f"expert width {H} != dense FFN width {F}")
    if mode == "split" and (H > F or F % H):
        raise ConfigError("init.upcycle", "split",
                          f"copy, or an expert width that divides the dense FFN width {F}",
                          f"expert width {H} does not divide {F}")
    n = F // H
    half = 0.5 if moe.n_shared else 1.0
    scale = half * n  # split: n restores the scale in expectation (docstring); copy: n = 1
    w13, w2 = [], []
    for e in range(E):
        lo = (e % n) * H
        w1_DH, w3_DH, w2_HD = _units(ffn, torch.arange(lo, lo + H))
        w13.append(torch.cat([_noisy(w1_DH, noise, generator),
                              _noisy(w3_DH, noise, generator)], -1))
        w2.append(_noisy(w2_HD * scale, noise, generator))
    out = {prefix + "experts.w13": torch.stack(w13), prefix + "experts.w2": torch.stack(w2)}
    if moe.n_shared:
        S = moe.n_shared * moe.shared_width
        w1_DS, w3_DS, w2_SD = _units(ffn, torch.arange(S) % F)
        shared_half = 0.5
        if moe.shared_gate:  # sigmoid(0) = 0.5: the gate halves the shared side
            out[prefix + "shared_gate.weight"] = torch.zeros(1, w1_DS.shape[0])
            shared_half = 1.0
        out[prefix + "shared.w1.weight"] = w1_DS.t()
        out[prefix + "shared.w3.weight"] = w3_DS.t()
        out[prefix + "shared.w2.weight"] = (w2_SD * (shared_half * F / S)).t()
    return out


def _units(ffn: Weights, idx_H: torch.Tensor) -> Weights:
    """Hidden units idx of a dense FFN (w1, w3 (F, D), w2 (D, F)) as expert-layout
    (w1 (D, H), w3 (D, H), w2 (H, D))."""
    w1, w3, w2 = ffn
    return w1[idx_H].t(), w3[idx_H].t(), w2[:, idx_H].t()


def _noisy(w: torch.Tensor, noise: float, generator) -> torch.Tensor:
    """w + N(0, (noise * std(w))^2): relative noise, so experts can diverge (Komatsuzaki)."""
    if noise <= 0:
        return w
    return w + noise * w.std() * torch.randn(w.shape, generator=generator, dtype=w.dtype)
