"""Where the weights start: a checkpoint, an upcycled dense model, and what stays frozen.

Sparse upcycling (Komatsuzaki et al. 2022): an MoE starts from a trained dense model;
every parameter outside the MoE layers is copied, each MoE layer's experts are made from
the dense FFN of the same block, and the router starts fresh. Fine-tuning only the non-MoE
parameters follows Zoph et al. 2022 (ST-MoE).

Legend: D model width, F dense FFN hidden width, H routed expert width, E routed experts,
n = F // H slices of the dense FFN (split), S shared hidden width (n_shared * d_shared).
Dense weights are nn.Linear's: w1, w3 (F, D) and w2 (D, F); SwiGLU is a sum over hidden
units, FFN(x) = sum_j w2[:, j] * silu(w1[j] x) * (w3[j] x), which is why slicing and
tiling hidden units are the natural moves below.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import random
from pathlib import Path

import torch
from torch import nn

from ablate import paths
from ablate.config.schema import BudgetConfig, InitConfig, RunConfig, TrackingConfig
from ablate.errors import ConfigError
from ablate.models.moe.layer import MoELayer

WEIGHTS_ALLOWED = "a weights file written by ablate (…/weights.pt)"
FREEZE = ("none", "moe", "non_moe")


# -- weights files ------------------------------------------------------------------------
def save_weights(model: nn.Module, path: str | Path) -> None:
    """model.state_dict() to `path`, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict on CPU; tensors only (weights_only: no code runs from the file)."""
    if not Path(path).is_file():
        raise ConfigError("init.from_checkpoint", str(path), WEIGHTS_ALLOWED, "file not found")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ConfigError("init.from_checkpoint", str(path), WEIGHTS_ALLOWED,
                          f"not readable as weights ({type(e).__name__})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError("init.from_checkpoint", str(path), WEIGHTS_ALLOWED, "not a state dict")
    return sd


# -- upcycling ----------------------------------------------------------------------------
def _write_expert(experts: nn.Module, e: int, w1_DH, w3_DH, w2_HD) -> None:
    """Expert e := (w1, w3, w2). The one place that knows RoutedExperts' layout: `w1`, `w3`
    (E, D, H) and `w2` (E, H, D), where w1/w3 may be views of a fused `w13` (in-place
    writes through the view land in the parameter)."""
    experts.w1[e].copy_(w1_DH)
    experts.w3[e].copy_(w3_DH)
    experts.w2[e].copy_(w2_HD)


def _units(ffn: tuple[torch.Tensor, ...], idx_H: torch.Tensor):
    """Hidden units idx of a dense FFN (w1, w3 (F, D), w2 (D, F)) as expert-layout
    (w1 (D, H), w3 (D, H), w2 (H, D))."""
    w1, w3, w2 = ffn
    return w1[idx_H].t(), w3[idx_H].t(), w2[:, idx_H].t()


def _noisy(w: torch.Tensor, noise: float, generator) -> torch.Tensor:
    """w + N(0, (noise * std(w))^2): relative noise, so experts can diverge (Komatsuzaki)."""
    if noise <= 0:
        return w
    return w + noise * w.std() * torch.randn(w.shape, generator=generator, dtype=w.dtype)


def _dense_ffn(dense_sd, i: int, source: str) -> tuple[torch.Tensor, ...]:
    keys = [f"blocks.{i}.ffn.{w}.weight" for w in ("w1", "w3", "w2")]
    missing = [k for k in keys if k not in dense_sd]
    if missing:
        raise ConfigError("init.from_checkpoint", source, "a dense model's weights",
                          f"no dense FFN for MoE block {i} ({missing[0]} missing)")
    return tuple(dense_sd[k].float() for k in keys)


@torch.no_grad()
def upcycle_into(moe_model: nn.Module, dense_sd: dict[str, torch.Tensor], mode: str = "copy",
                 noise: float = 0.0, generator: torch.Generator | None = None, *,
                 source: str = "dense weights") -> None:
    """Initialise `moe_model` (a Transformer with MoE layers) from a dense state dict, in place.

    Everything outside the MoE layers must match the dense model by name and shape and is
    copied. Per MoE layer (block i), from the dense FFN `blocks.{i}.ffn` of width F:

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
    - the router keeps its own (fresh) init; noise (std noise * std(w), per tensor, per
      expert) goes on every routed expert in both modes.
    """
    if mode not in ("copy", "split"):
        raise ConfigError("init.upcycle", mode, "copy, split")
    blocks = moe_model.blocks  # type: ignore[attr-defined]
    moe_ids = [i for i, b in enumerate(blocks) if isinstance(b.ffn, MoELayer)]
    if not moe_ids:
        raise ConfigError("init.from_checkpoint", source, "an MoE model to upcycle into",
                          "model.ffn is dense: nothing to upcycle")
    moe_prefixes = tuple(f"blocks.{i}.ffn." for i in moe_ids)
    model_sd = moe_model.state_dict()  # shares storage with the parameters
    for name, t in model_sd.items():
        if name.startswith(moe_prefixes):
            continue
        src = dense_sd.get(name)
        if src is None or src.shape != t.shape:
            got = "missing" if src is None else f"shape {tuple(src.shape)}"
            raise ConfigError("init.from_checkpoint", source,
                              "the dense counterpart of this model (same sizes outside the FFN; "
                              "dense FFN layers of a hybrid model as wide as model.d_ff)",
                              f"{name}: {got} in the checkpoint, {tuple(t.shape)} in the model")
        t.copy_(src)
    for i in moe_ids:
        _upcycle_layer(blocks[i].ffn, _dense_ffn(dense_sd, i, source), mode, noise, generator)


def _upcycle_layer(layer: MoELayer, ffn, mode: str, noise: float, generator) -> None:
    F, H, E = ffn[0].shape[0], layer.dims.d_expert, layer.dims.n_experts
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
    half = 0.5 if layer.shared is not None else 1.0
    scale = half * n  # split: n restores the scale in expectation (docstring); copy: n = 1
    for e in range(E):
        lo = (e % n) * H
        w1, w3, w2 = _units(ffn, torch.arange(lo, lo + H))
        _write_expert(layer.experts, e, _noisy(w1, noise, generator), _noisy(w3, noise, generator),
                      _noisy(w2 * scale, noise, generator))
    if layer.shared is not None:
        S = layer.shared.w1.weight.shape[0]
        w1, w3, w2 = _units(ffn, torch.arange(S) % F)
        shared_half = 0.5
        if layer.shared_gate is not None:
            layer.shared_gate.weight.zero_()  # sigmoid(0) = 0.5: the gate halves the shared side
            shared_half = 1.0
        layer.shared.w1.weight.copy_(w1.t())
        layer.shared.w3.weight.copy_(w3.t())
        layer.shared.w2.weight.copy_((w2 * (shared_half * F / S)).t())


# -- freezing -----------------------------------------------------------------------------
def freeze(model: nn.Module, what: str) -> int:
    """requires_grad=False on the MoE layers' parameters (router, experts, shared, gate)
    for `moe`, on everything else for `non_moe`. Returns the number of frozen scalars.
    Buffers are untouched: an aux-loss-free router bias still moves (not a gradient)."""
    if what not in FREEZE:
        raise ConfigError("init.freeze", what, ", ".join(FREEZE))
    if what == "none":
        return 0
    moe = {id(p) for layer in getattr(model, "moe_layers", []) for p in layer.parameters()}
    frozen = 0
    for p in model.parameters():  # tied weights appear once
        if (id(p) in moe) == (what == "moe"):
            p.requires_grad_(False)
            frozen += p.numel()
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("init.freeze", what, "none, or moe for an MoE model",
                          "nothing would be trained")
    return frozen


# -- the dense parent ---------------------------------------------------------------------
def dense_parent_config(cfg: RunConfig) -> RunConfig:
    """The dense model an MoE config is upcycled from: same everything (data, seed, optim,
    attention sizes), model.ffn=dense, trainer.max_steps=init.dense_steps.

    Its d_ff: copy mode -> the routed expert width H (every expert is the whole dense FFN);
    split mode -> the coarse expert width (model.moe.d_expert or model.d_ff), so granularity
    m cuts it into m experts. With granularity 1 and no d_expert both are model.d_ff, so
    copy and split arms of one study share one parent. Fields that do not shape a dense model
    (model.moe, budget, init, tracking) are reset, so every MoE layout shares the parent."""
    from ablate.config.load import load_config
    from ablate.models.moe.sizes import moe_dims, moe_layer_ids

    m = cfg.model
    if cfg.init.upcycle == "copy":
        width = moe_dims(m.moe, m.d_ff).d_expert
    else:
        width = m.moe.d_expert or m.d_ff
    if width != m.d_ff and len(moe_layer_ids(m)) < m.n_layers:
        raise ConfigError("init.dense_steps", cfg.init.dense_steps,
                          f"a parent width ({width}) equal to model.d_ff ({m.d_ff}) when the model "
                          "keeps dense FFN layers (first_dense / moe_every)",
                          "the dense layers could not be copied from the parent")
    dense = copy.deepcopy(cfg)
    dense.model.ffn, dense.model.d_ff = "dense", width
    dense.model.moe = load_config().model.moe  # defaults, validated router dataclass
    dense.budget, dense.init, dense.tracking = BudgetConfig(), InitConfig(), TrackingConfig()
    dense.trainer.max_steps = cfg.init.dense_steps
    dense.trainer.progress = False  # the trial's own bar (or none) is the one shown
    return dense


@contextlib.contextmanager
def _rng_preserved():
    """Training a parent re-seeds the global RNGs; restore them so a trial that trained the
    parent continues exactly like one that found it cached."""
    import numpy as np

    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        yield
    random.setstate(py)
    np.random.set_state(npy)


def dense_parent(cfg: RunConfig, *, experiment: str, tracking_uri: str | None,
                 parent_run_id: str | None) -> tuple[Path, str | None]:
    """Weights of cfg's dense parent, trained once per config (cached under
    $ABLATE_HOME/checkpoints/dense-parents/<sha>/; a file lock makes parallel trials that
    share a parent wait for one of them). Returns (weights path, the parent's MLflow run id)."""
    from filelock import FileLock

    from ablate.config.load import to_yaml
    from ablate.tracking.naming import arm_name

    dense = dense_parent_config(cfg)
    text = to_yaml(dense)
    sha = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = paths.checkpoint_dir("dense-parents", sha)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights.pt"
    with FileLock(str(folder / ".lock")):
        if not weights.is_file():
            from ablate.training.run import train  # run.py imports this module lazily too

            # its own arm name: never grouped with a dense arm of the same width
            arm = arm_name(dense).replace("dense-", "dense-parent-", 1)
            tags = {"ablate.role": "dense_parent", "ablate.arm": arm,
                    "ablate.dense_parent_sha": sha}
            with _rng_preserved():
                result = train(dense, experiment=experiment, tracking_uri=tracking_uri,
                               parent_run_id=parent_run_id, run_name=f"{arm}-{sha[:8]}",
                               tags=tags, weights_out=str(weights))
            (folder / "config.yaml").write_text(text)
            meta = {"run_id": result.run_id, "experiment": experiment}
            (folder / "parent.json").write_text(json.dumps(meta))
    return weights, _parent_run_id(folder)


def _parent_run_id(folder: Path) -> str | None:
    """The MLflow run that wrote a cached parent's weights (parent.json beside them)."""
    try:
        return json.loads((folder / "parent.json").read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


# -- the entry point run.train calls ------------------------------------------------------
def prepare_init(cfg: RunConfig, model: nn.Module, *, experiment: str,
                 tracking_uri: str | None = None,
                 parent_run_id: str | None = None) -> dict[str, str]:
    """Apply cfg.init to a freshly built model, in place. Returns MLflow tags for the run."""
    i = cfg.init
    if i.from_checkpoint and i.dense_steps:
        raise ConfigError("init.dense_steps", i.dense_steps, "0 when init.from_checkpoint is set",
                          "two sources for the starting weights")
    tags: dict[str, str] = {"ablate.init": "scratch"}
    source, parent = None, None
    if i.dense_steps:
        path, parent = dense_parent(cfg, experiment=experiment, tracking_uri=tracking_uri,
                                    parent_run_id=parent_run_id)
        source = str(path)
        tags["ablate.dense_parent_steps"] = str(i.dense_steps)
    elif i.from_checkpoint:
        source = str(Path(i.from_checkpoint).expanduser())
        parent = _parent_run_id(Path(source).parent)
    if source is not None:
        sd = load_weights(source)
        model_sd = model.state_dict()
        exact = sd.keys() == model_sd.keys() and all(
            sd[k].shape == v.shape for k, v in model_sd.items())
        is_dense = not any(".ffn.router." in k or ".ffn.experts." in k for k in sd)
        if exact:
            model.load_state_dict(sd, strict=True)
            tags["ablate.init"] = "checkpoint"
        elif getattr(model, "moe_layers", None) and is_dense:
            gen = torch.Generator().manual_seed(cfg.trainer.seed)  # not the global RNG
            upcycle_into(model, sd, i.upcycle, i.noise, gen, source=source)
            tags["ablate.init"] = f"upcycle_{i.upcycle}"
            tags["ablate.upcycle_noise"] = str(i.noise)
            tags["ablate.upcycled_from"] = parent or source
        else:
            raise ConfigError("init.from_checkpoint", source,
                              "weights of this exact model, or of its dense counterpart "
                              "(MoE model)",
                              "its keys or shapes match neither")
        tags["ablate.init_weights"] = source
    if i.freeze != "none":
        tags["ablate.frozen"] = i.freeze
        tags["ablate.frozen_params"] = str(freeze(model, i.freeze))
    return tags
