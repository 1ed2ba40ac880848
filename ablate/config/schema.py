# Over 250 lines: one declarative dataclass per config section; splitting them
# would scatter the keys.
"""Typed configuration schema: dataclass defaults <- YAML <- `key=value` dotlist.

Every field here is a dotted key users can override on the command line
(`model.moe.top_k=2`), search over in a sweep file, and find again as an MLflow param.
The router's options are the config dataclass its name registered (a `RouterConfig`
subclass, see `ablate.registry`); aux-loss weights live in an open dict (`model.moe.aux`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ablate.config.domains import (
    below_one,
    derived,
    described,
    fraction,
    in_range,
    non_negative,
    one_of,
    positive,
    text,
    unit_interval,
    weights,
)
from ablate.registry import AUX_LOSSES, ROUTERS

# the enum-like keys' values (a registry's names where plugins can add one)
DATA_SOURCES = ("stdlib", "text", "json", "parquet", "hub")
FFN_KINDS = ("dense", "moe")
ATTENTIONS = ("mha", "mla")
DROP_PRIORITIES = ("position", "score")
DISPATCHES = ("grouped", "loop")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto", "mps")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "64-true")
UPCYCLES = ("copy", "split")
FREEZES = ("none", "moe", "non_moe")
SCHEDULES = ("cosine", "wsd")
DECAY_SHAPES = ("1-sqrt", "linear")
ROUTER_INITS = ("normal", "uniform", "zeros")
MAX_SEED = 2**32 - 1  # Lightning's seed_everything raises a ValueError (a traceback) above it


PRESETS_DIR = Path(__file__).parent / "presets" / "moe"  # model.moe.preset: a file each


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


@dataclass
class DataConfig:
    """Where text comes from and how it becomes (B, block_size) token blocks."""

    source: str = one_of("stdlib", DATA_SOURCES, help="where text comes from: stdlib (Python's "
                                                      "own source) | text | json | parquet | hub")
    files: list[str] = described(  # noqa: RUF009 - returns a field()
        None, default_factory=list, help="local files or globs (data.source=text, json, parquet)")
    validation_files: list[str] = described(  # noqa: RUF009 - returns a field()
        None, default_factory=list, help="validation files or globs (default: data.files split by "
                                         "file, or one file by document)")
    name: Optional[str] = text(None, help="Hugging Face Hub dataset name (data.source=hub; needs "
                                          "internet)")
    subset: Optional[str] = text(None, help="Hub dataset config name")
    text_field: str = text("text", help="the JSON/Parquet column read as text")
    val_fraction: float = fraction(0.02, help="share held out for validation: files by a stable "
                                              "hash of the path (one file: its last documents)")
    max_docs: Optional[int] = positive(None, help="keep the first N documents (stdlib: files, "
                                                  "sorted): quick runs, tests")
    tokenizer: str = text("byte", help="byte (UTF-8 bytes, vocabulary 256) | bpe (a byte-level "
                                       "BPE trained on the training split, cached) | a "
                                       "registered name | a tokenizer.json or a saved Hugging "
                                       "Face tokenizer directory")
    vocab_size: Optional[int] = positive(None, help="data.tokenizer=bpe: its vocabulary, "
                                                    "257..65536 (null: 4096)")
    block_size: int = positive(128, help="tokens per training sequence (documents packed into "
                                         "fixed blocks)")
    batch_size: int = positive(16, help="sequences per optimizer micro-batch")
    num_workers: int = non_negative(0, help="DataLoader worker processes")


@dataclass
class RouterConfig:
    """The keys every router reads. Each router registers a subclass with its own keys and
    defaults (`ablate/models/moe/routers/`); `model.moe.router` holds an instance of the one
    its `name` selects (`ablate.config.load`). The routers' constructors check these too,
    for routers built without `load_config`."""

    name: str = one_of("softmax_topk", ROUTERS.names, help="the router")
    init: str = one_of("normal", ROUTER_INITS, help="router weight init: normal | uniform "
                       "(same variance) | zeros")  # Switch: small-variance init for stability
    init_std: float = non_negative(0.02, help="std of the router weight init")
    jitter: float = below_one(0.0, help="multiplicative input noise x * U(1-eps, 1+eps) while "
                              "training (Switch)")


def default_router() -> RouterConfig:
    """The config of the default router (`model.moe.router` without a name)."""
    return ROUTERS.get(None).config()


@dataclass
class MoEConfig:
    """The MoE FFN. `n_experts`, `top_k`, `d_expert` are the coarse sizes; with
    `granularity` m the layer has m*n_experts experts of width d_expert/m and routes each
    token to m*top_k of them (DeepSeekMoE segmentation: total and active params fixed).
    What they resolve to (`routed_experts`, `routed_top_k`, `expert_width`, `shared_width`)
    is filled in once by `load_config`; the layer, accounting and naming read only those."""

    n_experts: int = positive(8, help="routed experts per MoE layer (before granularity)")
    top_k: int = positive(2, help="experts per token (before granularity; <= n_experts)")
    d_expert: Optional[int] = positive(None, help="hidden width of a routed expert (default: "
                                                  "model.d_ff; set by budget.ffn_active)")
    granularity: int = positive(1, help="m: split each expert in m (m*n_experts experts of "
                                        "d_expert/m, m*top_k per token; DeepSeekMoE)")
    n_shared: int = non_negative(0, help="shared experts every token goes through (DeepSeekMoE, "
                                         "Qwen)")
    d_shared: Optional[int] = positive(None, help="hidden width of a shared expert (default: the "
                                                  "routed expert width)")
    shared_gate: bool = described(False, "scale the shared experts' output by a learned sigmoid "
                                         "gate (Qwen)")
    # -- derived by load_config after the budget (ablate/config/derived.py): read, never set
    routed_experts: Optional[int] = derived("E, routed experts in the layer: n_experts x "
                                            "granularity (derived)")
    routed_top_k: Optional[int] = derived("K, routed experts per token: top_k x granularity "
                                          "(derived)")
    expert_width: Optional[int] = derived("hidden width of one routed expert: (d_expert or "
                                          "model.d_ff) / granularity (derived)")
    shared_width: Optional[int] = derived("hidden width of one shared expert: d_shared or "
                                          "expert_width (derived)")
    moe_every: int = positive(1, help="every n-th block is MoE (hybrid dense/MoE when > 1)")
    first_dense: int = non_negative(0, help="the first n blocks stay dense (DeepSeek)")
    capacity_factor: Optional[float] = positive(
        None, help="expert capacity while training, x the mean load; null = dropless")
    eval_capacity_factor: Optional[float] = positive(
        None, help="expert capacity at evaluation; null = dropless")
    drop_priority: str = one_of(
        "position", DROP_PRIORITIES, help="who survives when capacity overflows: position "
                                          "(earlier tokens) | score")
    expert_dropout: float = below_one(0.0, help="dropout on the experts' hidden units while "
                                                "training (Switch)")
    router_lr_mult: float = positive(1.0, help="the router's learning rate is optim.lr times this")
    dispatch: str = one_of("grouped", DISPATCHES, help="grouped (sorted tokens, one grouped GEMM) "
                                                       "| loop (the reference)")
    allow_noncausal_routing: bool = described(False, "allow routers whose choice depends on later "
                                                     "tokens (expert_choice, soft, ...; the run "
                                                     "is tagged)")
    allow_frozen_router: bool = described(False, "train even if the LM loss cannot reach the "
                                                 "router")
    preset: Optional[str] = one_of(None, preset_names,
                                   help="a model's MoE block (presets/moe/): sets "
                                        "the keys below; any key you set wins")
    expert_parallel: bool = described(False, "shard the experts across the ranks of a DDP trial "
                                             "(all_to_all)")
    n_devices: Optional[int] = positive(None, help="expert groups for the device/comm losses "
                                                   "(default: the router's device groups if it "
                                                   "has them, else 1)")
    # Typed as the base class every router config extends. OmegaConf 2.4 takes a subclass
    # node in a base-typed field, so load_config swaps in the dataclass the router's `name`
    # registered before merging the user's keys: the merge itself refuses a key that router
    # does not have, and to_object returns that dataclass. (A dict field would need a second
    # validation pass and a swap after the merge.)
    router: RouterConfig = described(  # noqa: RUF009 - returns a field()
        None, default_factory=default_router, help="the router: a name and its parts and "
                                                   "options (model.moe.router.*)")
    aux: dict[str, float] = weights(  # noqa: RUF009 - returns a field(), like the others
        lambda: {"switch": 0.01, "z": 0.001}, AUX_LOSSES.names, "aux loss",
        help="weight of the aux loss (0 or absent: off)")


@dataclass
class MLAConfig:
    """Multi-head latent attention (DeepSeek-V2 §2.1, `model.attention=mla`). Keys and values
    are rebuilt per head from a latent of `kv_rank` floats; RoPE acts on a separate
    `rope_dim`-wide part of each query and on one key part shared by all heads. A token's
    KV cache is kv_rank + rope_dim floats per layer (MHA: 2 * d_model). The defaults give
    about the attention parameters of MHA at d_model=128, n_heads=4 (67.6k vs 65.5k)."""

    kv_rank: int = positive(64, help="d_c, the cached KV latent (V2: 4 d_h; here 2 d_h)")
    q_rank: int = non_negative(0, help="d_c', the query latent; 0: queries straight from x "
                                       "(V2-Lite)")
    rope_dim: int = positive(16, help="d_h^R, the decoupled RoPE width per head (even; V2: half "
                                      "of d_h)")
    head_dim: Optional[int] = positive(None, help="d_h, the non-RoPE query/key width per head "
                                                  "(default d_model / n_heads)")
    v_head_dim: Optional[int] = positive(None, help="value width per head (default head_dim)")


@dataclass
class MTPConfig:
    """Multi-token prediction (DeepSeek-V3 §2.2): `depth` sequential modules, module k
    predicting token t+k+1 through the shared embedding and output head; the training loss
    adds weight / depth * sum_k L_k (V3 eq. 25). Training only: val/loss is next-token."""

    depth: int = non_negative(0, help="D, extra tokens predicted (0: off, the plain model)")
    weight: float = non_negative(0.3, help="lambda, the MTP loss weight (V3: 0.3 for the first "
                                           "10T tokens, then 0.1)")


@dataclass
class ModelConfig:
    ffn: str = one_of("dense", FFN_KINDS, help="the feed-forward block: dense (SwiGLU) | moe "
                                               "(model.moe.*)")
    attention: str = one_of("mha", ATTENTIONS, help="mha | mla (latent KV, model.mla.*)")
    vocab_size: Optional[int] = positive(None, help="null: taken from the tokenizer")
    d_model: int = positive(128, help="model width")
    n_layers: int = positive(4, help="transformer blocks")
    n_heads: int = positive(4, help="attention heads")
    d_ff: int = positive(512, help="SwiGLU hidden width of the dense FFN (set by "
                                   "budget.ffn_active)")
    rope_theta: float = positive(10000.0, help="RoPE base")
    norm_eps: float = positive(1e-5, help="RMSNorm epsilon")
    dropout: float = below_one(0.0, help="dropout on attention and residual outputs")
    tie_embeddings: bool = described(True, "the output head shares the token embedding")
    init_std: float = non_negative(0.02, help="std of the weight init")
    moe: MoEConfig = field(default_factory=MoEConfig)
    mla: MLAConfig = field(default_factory=MLAConfig)
    mtp: MTPConfig = field(default_factory=MTPConfig)


@dataclass
class OptimConfig:
    lr: float = positive(3e-3, help="peak learning rate (AdamW), after linear warmup, then the "
                                    "schedule's decay")
    min_lr_ratio: float = unit_interval(0.1, help="the schedule decays to lr * min_lr_ratio")
    schedule: str = one_of("cosine", SCHEDULES, help="cosine (warmup, cosine decay over the run) | "
                           "wsd (warmup, stable, then a cooldown: several budgets from one run, "
                           "trainer.budgets)")
    decay_fraction: float = in_range(0.2, 0, 1, low_open=True, help="wsd only: the cooldown is "
                                     "this share of a run's steps")
    decay_shape: str = one_of("1-sqrt", DECAY_SHAPES, help="wsd only: the cooldown's shape, "
                              "1 - (1 - min_lr_ratio) * sqrt(p) or * p over its progress p")
    weight_decay: float = non_negative(0.1, help="AdamW weight decay")
    beta1: float = below_one(0.9, help="AdamW beta1")
    beta2: float = below_one(0.95, help="AdamW beta2")
    eps: float = positive(1e-8, help="AdamW epsilon")
    warmup_steps: int = non_negative(20, help="linear warmup steps")
    grad_clip: float = non_negative(1.0, help="gradient norm clip (0: no clipping)")


@dataclass
class TrainerConfig:
    max_steps: int = positive(200, help="optimizer steps")
    val_every: int = positive(50, help="validate every n optimizer steps (and always at the end)")
    val_batches: int = positive(20, help="validation batches per validation")
    log_every: int = positive(10, help="log training metrics every n steps")
    accelerator: str = one_of("cpu", ACCELERATORS, help="Lightning accelerator")
    devices: int = positive(1, help="devices per trial; > 1: DDP inside the trial (launch with "
                                    "torchrun / srun)")
    num_nodes: int = positive(1, help="nodes per trial (multi-node DDP)")
    precision: str = one_of("32-true", PRECISIONS, help="Lightning precision (16-mixed: GPU only)")
    accumulate_grad_batches: int = positive(1, help="micro-batches per optimizer step")
    deterministic: bool = described(True, "deterministic algorithms (same seed, same run)")
    seed: int = in_range(0, 0, MAX_SEED, help="the run's seed (a sweep's repeats use seed, "
                                              "seed+1, ...)")
    progress: bool = described(True, "show a progress bar")
    compile: bool = described(False, "torch.compile the attention and dense FFN modules (the "
                              "MoE dispatch stays eager: data-dependent shapes)")
    profile: bool = described(False, "time the run: start-up phases and every Lightning hook "
                              "(SimpleProfiler), summed by what they do; printed by ablate "
                              "train, logged as profile.txt")
    budgets: list[int] = described(None, "optim.schedule=wsd only: step counts below max_steps "
                                   "at which a cooldown branch measures val/loss as a run of "
                                   "that length would (budget/val_loss, its step in tokens)",
                                   default_factory=list)


@dataclass
class TrackingConfig:
    experiment: Optional[str] = text(None, help="MLflow experiment (default: ablate-train, or the "
                                                "study name for sweeps)")
    run_name: Optional[str] = text(None, help="MLflow run name (default: generated from the "
                                              "config)")
    tracking_uri: Optional[str] = text(None, help="MLflow tracking URI (default: "
                                                  "sqlite:///$ABLATE_HOME/mlflow.db)")
    routing_stats_every: int = positive(10, help="log routing statistics (moe/*) every n steps")


@dataclass
class BudgetConfig:
    """Hold the per-token FFN budget fixed while a sweep varies the MoE layout.

    `ffn_active`: hidden units a token activates in each FFN layer. Dense: d_ff. MoE:
    (top_k*granularity) routed experts plus n_shared shared experts; the expert width is
    solved for (shared experts as wide as a routed one unless d_shared is set). Active
    parameters then match across arms up to the router's E*D per MoE layer."""

    ffn_active: Optional[int] = positive(None, help="hidden units a token activates per FFN "
                                                    "layer: sets model.d_ff and "
                                                    "model.moe.d_expert so arms match")


@dataclass
class InitConfig:
    """Where the weights start: scratch, a checkpoint, or an upcycled dense model."""

    from_checkpoint: Optional[str] = text(None, help="start from a weights file written by ablate "
                                                     "(dense or same shape)")
    dense_steps: int = non_negative(0, help="> 0: train the dense counterpart this long first "
                                            "(cached), then upcycle it")
    upcycle: str = one_of("copy", UPCYCLES, help="copy: every expert = the dense FFN | split: "
                                                 "experts = slices of it")
    noise: float = non_negative(0.0, help="relative std of noise added to copied expert weights")
    freeze: str = one_of("none", FREEZES, help="none | moe (train only non-MoE params, Zoph et "
                                               "al.) | non_moe")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    init: InitConfig = field(default_factory=InitConfig)
