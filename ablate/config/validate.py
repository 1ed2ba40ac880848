"""Cross-field checks: impossible combinations fail here, before anything runs."""

from __future__ import annotations

from ablate.config.schema import RunConfig
from ablate.errors import ConfigError

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "64-true")


def _choice(key: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(key, value, ", ".join(map(str, allowed)))


def _positive(key: str, value: float | None, allow_none: bool = False, zero: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 0 or (value == 0 and not zero):
        raise ConfigError(key, value, "a number >= 0" if zero else "a number > 0")


def validate(cfg: RunConfig) -> None:
    m, moe, d, t, o = cfg.model, cfg.model.moe, cfg.data, cfg.trainer, cfg.optim
    _choice("model.ffn", m.ffn, ("dense", "moe"))
    for key in ("d_model", "n_layers", "n_heads", "d_ff"):
        _positive(f"model.{key}", getattr(m, key))
    if m.d_model % m.n_heads:
        raise ConfigError("model.n_heads", m.n_heads, f"a divisor of model.d_model ({m.d_model})")
    if (m.d_model // m.n_heads) % 2:
        raise ConfigError("model.n_heads", m.n_heads, "a head width d_model/n_heads that is even (RoPE)")
    if not 0 <= m.dropout < 1:
        raise ConfigError("model.dropout", m.dropout, "0 <= dropout < 1")

    _positive("model.moe.n_experts", moe.n_experts)
    _positive("model.moe.top_k", moe.top_k)
    if moe.top_k > moe.n_experts:
        raise ConfigError("model.moe.top_k", moe.top_k, f"1..model.moe.n_experts ({moe.n_experts})")
    _positive("model.moe.granularity", moe.granularity)
    _positive("model.moe.d_expert", moe.d_expert, allow_none=True)
    d_exp = moe.d_expert or m.d_ff
    if d_exp % moe.granularity:
        raise ConfigError("model.moe.granularity", moe.granularity,
                          f"a divisor of the expert width ({d_exp})")
    if moe.n_shared < 0:
        raise ConfigError("model.moe.n_shared", moe.n_shared, "an integer >= 0")
    _positive("model.moe.d_shared", moe.d_shared, allow_none=True)
    _positive("model.moe.moe_every", moe.moe_every)
    if not 0 <= moe.first_dense <= m.n_layers:
        raise ConfigError("model.moe.first_dense", moe.first_dense, f"0..model.n_layers ({m.n_layers})")
    for key in ("capacity_factor", "eval_capacity_factor"):
        _positive(f"model.moe.{key}", getattr(moe, key), allow_none=True)
    _choice("model.moe.drop_priority", moe.drop_priority, ("position", "score"))
    _choice("model.moe.dispatch", moe.dispatch, ("grouped", "loop"))
    if not 0 <= moe.expert_dropout < 1:
        raise ConfigError("model.moe.expert_dropout", moe.expert_dropout, "0 <= p < 1")
    _positive("model.moe.router_lr_mult", moe.router_lr_mult)
    _positive("model.moe.n_devices", moe.n_devices, allow_none=True)
    if moe.n_devices and (moe.n_experts * moe.granularity) % moe.n_devices:
        raise ConfigError("model.moe.n_devices", moe.n_devices,
                          f"a divisor of the routed experts ({moe.n_experts * moe.granularity})")

    _choice("data.source", d.source, ("stdlib", "text", "json", "parquet", "hub"))
    if d.source in ("text", "json", "parquet") and not d.files:
        raise ConfigError("data.files", d.files, f"one or more paths or globs for data.source={d.source}")
    if d.source == "hub" and not d.name:
        raise ConfigError("data.name", d.name, "a Hugging Face dataset name for data.source=hub")
    _positive("data.block_size", d.block_size)
    _positive("data.batch_size", d.batch_size)
    if not 0 < d.val_fraction < 1:
        raise ConfigError("data.val_fraction", d.val_fraction, "0 < fraction < 1")

    _positive("optim.lr", o.lr)
    if o.warmup_steps < 0:
        raise ConfigError("optim.warmup_steps", o.warmup_steps, "an integer >= 0")
    for key in ("max_steps", "val_every", "val_batches", "log_every", "devices", "num_nodes",
                "accumulate_grad_batches"):
        _positive(f"trainer.{key}", getattr(t, key))
    _choice("trainer.accelerator", t.accelerator, ("cpu", "gpu", "cuda", "auto", "mps"))
    _choice("trainer.precision", t.precision, PRECISIONS)
    _positive("tracking.routing_stats_every", cfg.tracking.routing_stats_every)
    i = cfg.init
    _choice("init.upcycle", i.upcycle, ("copy", "split"))
    _choice("init.freeze", i.freeze, ("none", "moe", "non_moe"))
    if i.noise < 0:
        raise ConfigError("init.noise", i.noise, "a number >= 0")
    if i.dense_steps < 0:
        raise ConfigError("init.dense_steps", i.dense_steps, "an integer >= 0")
    if i.dense_steps and m.ffn != "moe":
        raise ConfigError("init.dense_steps", i.dense_steps, "0 unless model.ffn=moe (upcycling)")
