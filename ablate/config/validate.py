"""Cross-field checks: impossible combinations fail here, before anything runs.

Each key's own domain (sign, range, finiteness, enum values) is declared in the schema and
enforced by `ablate.config.domains`, which runs first: this module only relates keys.
"""

from __future__ import annotations

from ablate.config.schema import RunConfig
from ablate.errors import ConfigError


def validate(cfg: RunConfig) -> None:
    _check_model(cfg)
    _check_moe(cfg)
    _check_data(cfg)
    i = cfg.init
    if i.dense_steps and cfg.model.ffn != "moe":
        raise ConfigError("init.dense_steps", i.dense_steps, "0 unless model.ffn=moe (upcycling)")


def _check_model(cfg: RunConfig) -> None:
    m = cfg.model
    mla = m.attention == "mla"
    if m.d_model % m.n_heads and not (mla and m.mla.head_dim):  # MLA: head_dim may set the width
        raise ConfigError("model.n_heads", m.n_heads, f"a divisor of model.d_model ({m.d_model})")
    if not mla and (m.d_model // m.n_heads) % 2:
        raise ConfigError("model.n_heads", m.n_heads,
                          "a head width d_model/n_heads that is even (RoPE)")
    if mla and m.mla.rope_dim % 2:  # MLA rotates only its decoupled part
        raise ConfigError("model.mla.rope_dim", m.mla.rope_dim,
                          "an even width (RoPE rotates pairs)")
    if m.mtp.depth >= cfg.data.block_size:  # depth k trains on the block's first S - k positions
        raise ConfigError("model.mtp.depth", m.mtp.depth,
                          f"0..data.block_size - 1 ({cfg.data.block_size - 1})")


def _check_moe(cfg: RunConfig) -> None:
    m, moe = cfg.model, cfg.model.moe
    if moe.top_k > moe.n_experts:
        raise ConfigError("model.moe.top_k", moe.top_k, f"1..model.moe.n_experts ({moe.n_experts})")
    d_exp = moe.d_expert or m.d_ff
    if d_exp % moe.granularity:
        raise ConfigError("model.moe.granularity", moe.granularity,
                          f"a divisor of the expert width ({d_exp})")
    if moe.first_dense > m.n_layers:
        raise ConfigError("model.moe.first_dense", moe.first_dense,
                          f"0..model.n_layers ({m.n_layers})")
    if moe.n_devices and moe.routed_experts % moe.n_devices:
        raise ConfigError("model.moe.n_devices", moe.n_devices,
                          f"a divisor of the routed experts ({moe.routed_experts})")


def _check_data(cfg: RunConfig) -> None:
    d = cfg.data
    if d.source in ("text", "json", "parquet") and not d.files:
        raise ConfigError("data.files", d.files,
                          f"one or more paths or globs for data.source={d.source}")
    if d.source == "hub" and not d.name:
        raise ConfigError("data.name", d.name, "a Hugging Face dataset name for data.source=hub")
