"""Typed configuration schema: dataclass defaults <- YAML <- `key=value` dotlist.

Every field here is a dotted key users can override on the command line
(`model.moe.top_k=2`), search over in a sweep file, and find again as an MLflow param.
Router and aux-loss options live in open dicts (`model.moe.router`, `model.moe.aux`)
because each router registers its own config dataclass (see `ablate.registry`);
`ablate.config.load` validates them against that dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ablate.config.domains import (
    below_one,
    fraction,
    in_range,
    non_negative,
    one_of,
    positive,
    text,
    unit_interval,
    weights,
)
from ablate.registry import AUX_LOSSES

# the enum-like keys' values (a registry's names where plugins can add one)
DATA_SOURCES = ("stdlib", "text", "json", "parquet", "hub")
FFN_KINDS = ("dense", "moe")
DROP_PRIORITIES = ("position", "score")
DISPATCHES = ("grouped", "loop")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto", "mps")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "64-true")
UPCYCLES = ("copy", "split")
FREEZES = ("none", "moe", "non_moe")
MAX_SEED = 2**32 - 1  # Lightning's seed_everything raises a ValueError (a traceback) above it


def _tokenizers() -> list[str]:
    from ablate.data.tokenizer import TOKENIZERS

    return sorted(TOKENIZERS)


def _presets() -> list[str]:
    from ablate.config.load import preset_names

    return preset_names()


@dataclass
class DataConfig:
    """Where text comes from and how it becomes (B, block_size) token blocks."""

    source: str = one_of("stdlib", DATA_SOURCES)  # stdlib | text | json | parquet | hub
    files: list[str] = field(default_factory=list)  # local files or globs (text/json/parquet)
    validation_files: list[str] = field(default_factory=list)  # else split by file
    name: Optional[str] = text(None)  # hub dataset name (needs internet)
    subset: Optional[str] = text(None)  # hub dataset config name
    text_field: str = text("text")  # the JSON/Parquet column read as text
    val_fraction: float = fraction(0.02)  # fraction of files held out, chosen by a hash of the path
    max_docs: Optional[int] = positive(None)  # keep the first N documents (sorted): quick runs, tests
    tokenizer: str = one_of("byte", _tokenizers)
    block_size: int = positive(128)
    batch_size: int = positive(16)
    num_workers: int = non_negative(0)


@dataclass
class MoEConfig:
    """The MoE FFN. `n_experts`, `top_k`, `d_expert` are the coarse sizes; with
    `granularity` m the layer has m*n_experts experts of width d_expert/m and routes each
    token to m*top_k of them (DeepSeekMoE segmentation: total and active params fixed)."""

    n_experts: int = positive(8)
    top_k: int = positive(2)  # <= n_experts: validate.py
    d_expert: Optional[int] = positive(None)  # default: model.d_ff
    granularity: int = positive(1)
    n_shared: int = non_negative(0)
    d_shared: Optional[int] = positive(None)  # default: the routed expert width
    shared_gate: bool = False
    moe_every: int = positive(1)  # every n-th block is MoE (hybrid dense/MoE when > 1)
    first_dense: int = non_negative(0)  # the first n blocks stay dense (DeepSeek)
    capacity_factor: Optional[float] = positive(None)  # None = dropless (training)
    eval_capacity_factor: Optional[float] = positive(None)  # None = dropless (evaluation)
    drop_priority: str = one_of("position", DROP_PRIORITIES)  # who survives when capacity overflows
    expert_dropout: float = below_one(0.0)
    router_lr_mult: float = positive(1.0)
    dispatch: str = one_of("grouped", DISPATCHES)  # grouped (sorted tokens, one grouped GEMM) | loop (reference)
    allow_noncausal_routing: bool = False
    allow_frozen_router: bool = False  # train even if the LM loss cannot reach the router
    preset: Optional[str] = one_of(None, _presets)  # a model's MoE block: switch, mixtral, deepseek_v3, ... (presets/moe/)
    expert_parallel: bool = False  # shard experts across the ranks of a DDP trial (all_to_all)
    n_devices: Optional[int] = positive(None)  # expert groups for the device/comm losses (default: the
    #                                  router's device groups if it has them, else 1)
    router: dict[str, Any] = field(default_factory=dict)  # {name: ..., parts and options}
    aux: dict[str, float] = weights(  # noqa: RUF009 - returns a field(), like the others
        lambda: {"switch": 0.01, "z": 0.001}, AUX_LOSSES.names, "aux loss")  # finite, >= 0


@dataclass
class ModelConfig:
    ffn: str = one_of("dense", FFN_KINDS)
    vocab_size: Optional[int] = positive(None)  # None: taken from the tokenizer
    d_model: int = positive(128)
    n_layers: int = positive(4)
    n_heads: int = positive(4)
    d_ff: int = positive(512)  # SwiGLU hidden width of the dense FFN
    rope_theta: float = positive(10000.0)
    norm_eps: float = positive(1e-5)
    dropout: float = below_one(0.0)
    tie_embeddings: bool = True
    init_std: float = non_negative(0.02)
    moe: MoEConfig = field(default_factory=MoEConfig)


@dataclass
class OptimConfig:
    lr: float = positive(3e-3)
    min_lr_ratio: float = unit_interval(0.1)  # cosine decays to lr * min_lr_ratio
    weight_decay: float = non_negative(0.1)
    beta1: float = below_one(0.9)
    beta2: float = below_one(0.95)
    eps: float = positive(1e-8)
    warmup_steps: int = non_negative(20)
    grad_clip: float = non_negative(1.0)  # 0: no clipping


@dataclass
class TrainerConfig:
    max_steps: int = positive(200)
    val_every: int = positive(50)  # validate every n optimizer steps (and always at the end)
    val_batches: int = positive(20)
    log_every: int = positive(10)
    accelerator: str = one_of("cpu", ACCELERATORS)
    devices: int = positive(1)  # > 1: DDP inside the trial (launch with torchrun / srun; see README)
    num_nodes: int = positive(1)
    precision: str = one_of("32-true", PRECISIONS)  # 16-mixed: GPU only
    accumulate_grad_batches: int = positive(1)
    deterministic: bool = True
    seed: int = in_range(0, 0, MAX_SEED)
    progress: bool = True


@dataclass
class TrackingConfig:
    experiment: Optional[str] = text(None)  # default: "ablate-train", or the study name for sweeps
    run_name: Optional[str] = text(None)
    tracking_uri: Optional[str] = text(None)  # default: sqlite:///$ABLATE_HOME/mlflow.db
    routing_stats_every: int = positive(10)


@dataclass
class BudgetConfig:
    """Hold the per-token FFN budget fixed while a sweep varies the MoE layout.

    `ffn_active`: hidden units a token activates in each FFN layer. Dense: d_ff. MoE:
    (top_k*granularity) routed experts plus n_shared shared experts; the expert width is
    solved for (shared experts as wide as a routed one unless d_shared is set). Active
    parameters then match across arms up to the router's E*D per MoE layer."""

    ffn_active: Optional[int] = positive(None)


@dataclass
class InitConfig:
    """Where the weights start: scratch, a checkpoint, or an upcycled dense model."""

    from_checkpoint: Optional[str] = text(None)  # weights file written by ablate (dense or same shape)
    dense_steps: int = non_negative(0)  # > 0: train the dense counterpart this long first (cached), upcycle it
    upcycle: str = one_of("copy", UPCYCLES)  # copy: every expert = the dense FFN | split: experts = slices of it
    noise: float = non_negative(0.0)  # relative std of noise added to copied expert weights
    freeze: str = one_of("none", FREEZES)  # none | moe (train only non-MoE params, Zoph et al.) | non_moe


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    init: InitConfig = field(default_factory=InitConfig)
