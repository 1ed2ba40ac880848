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


@dataclass
class DataConfig:
    """Where text comes from and how it becomes (B, block_size) token blocks."""

    source: str = "stdlib"  # stdlib | text | json | parquet | hub
    files: list[str] = field(default_factory=list)  # local files or globs (text/json/parquet)
    validation_files: list[str] = field(default_factory=list)  # else split by file
    name: Optional[str] = None  # hub dataset name (needs internet)
    subset: Optional[str] = None  # hub dataset config name
    text_field: str = "text"
    val_fraction: float = 0.02  # fraction of files held out, chosen by a hash of the path
    max_docs: Optional[int] = None  # keep the first N documents (sorted): quick runs, tests
    tokenizer: str = "byte"
    block_size: int = 128
    batch_size: int = 16
    num_workers: int = 0


@dataclass
class MoEConfig:
    """The MoE FFN. `n_experts`, `top_k`, `d_expert` are the coarse sizes; with
    `granularity` m the layer has m*n_experts experts of width d_expert/m and routes each
    token to m*top_k of them (DeepSeekMoE segmentation: total and active params fixed)."""

    n_experts: int = 8
    top_k: int = 2
    d_expert: Optional[int] = None  # default: model.d_ff
    granularity: int = 1
    n_shared: int = 0
    d_shared: Optional[int] = None  # default: the routed expert width
    shared_gate: bool = False
    moe_every: int = 1  # every n-th block is MoE (hybrid dense/MoE when > 1)
    first_dense: int = 0  # the first n blocks stay dense (DeepSeek)
    capacity_factor: Optional[float] = None  # None = dropless (training)
    eval_capacity_factor: Optional[float] = None  # None = dropless (evaluation)
    drop_priority: str = "position"  # position | score: who survives when capacity overflows
    expert_dropout: float = 0.0
    router_lr_mult: float = 1.0
    dispatch: str = "grouped"  # grouped (sorted tokens, one grouped GEMM) | loop (reference)
    allow_noncausal_routing: bool = False
    allow_frozen_router: bool = False  # train even if the LM loss cannot reach the router
    preset: Optional[str] = None  # a model's MoE block: switch, mixtral, deepseek_v3, ... (presets/moe/)
    expert_parallel: bool = False  # shard experts across the ranks of a DDP trial (all_to_all)
    n_devices: Optional[int] = None  # expert groups for the device/comm losses (default: the
    #                                  router's device groups if it has them, else 1)
    router: dict[str, Any] = field(default_factory=dict)  # {name: ..., parts and options}
    aux: dict[str, float] = field(default_factory=lambda: {"switch": 0.01, "z": 0.001})


@dataclass
class ModelConfig:
    ffn: str = "dense"  # dense | moe
    vocab_size: Optional[int] = None  # None: taken from the tokenizer
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512  # SwiGLU hidden width of the dense FFN
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_embeddings: bool = True
    init_std: float = 0.02
    moe: MoEConfig = field(default_factory=MoEConfig)


@dataclass
class OptimConfig:
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    warmup_steps: int = 20
    grad_clip: float = 1.0


@dataclass
class TrainerConfig:
    max_steps: int = 200
    val_every: int = 50  # validate every n optimizer steps (and always at the end)
    val_batches: int = 20
    log_every: int = 10
    accelerator: str = "cpu"  # cpu | gpu | auto
    devices: int = 1  # > 1: DDP inside the trial (launch with torchrun / srun; see README)
    num_nodes: int = 1
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
    accumulate_grad_batches: int = 1
    deterministic: bool = True
    seed: int = 0
    progress: bool = True


@dataclass
class TrackingConfig:
    experiment: Optional[str] = None  # default: "ablate-train", or the study name for sweeps
    run_name: Optional[str] = None
    tracking_uri: Optional[str] = None  # default: sqlite:///$ABLATE_HOME/mlflow.db
    routing_stats_every: int = 10


@dataclass
class BudgetConfig:
    """Hold the per-token FFN budget fixed while a sweep varies the MoE layout.

    `ffn_active`: hidden units a token activates in each FFN layer. Dense: d_ff. MoE:
    (top_k*granularity) routed experts plus n_shared shared experts; the expert width is
    solved for (shared experts as wide as a routed one unless d_shared is set). Active
    parameters then match across arms up to the router's E*D per MoE layer."""

    ffn_active: Optional[int] = None


@dataclass
class InitConfig:
    """Where the weights start: scratch, a checkpoint, or an upcycled dense model."""

    from_checkpoint: Optional[str] = None  # weights file written by ablate (dense or same shape)
    dense_steps: int = 0  # > 0: train the dense counterpart this long first (cached), upcycle it
    upcycle: str = "copy"  # copy: every expert = the dense FFN | split: experts = slices of it
    noise: float = 0.0  # relative std of noise added to copied expert weights
    freeze: str = "none"  # none | moe (train only non-MoE params, Zoph et al.) | non_moe


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    init: InitConfig = field(default_factory=InitConfig)
