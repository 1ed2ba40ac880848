"""Cross-field checks: impossible combinations fail here, before anything runs.

Each key's own domain (sign, range, finiteness, enum values) is declared in the schema and
enforced by `ablate.config.domains`, which runs first: this module only relates keys.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ablate.config.schema import RunConfig
from ablate.errors import ConfigError
from ablate.registry import TOKENIZERS

BPE = "bpe"
BPE_DEFAULT_VOCAB = 4096
MAX_VOCAB = 2**16  # token ids are stored as uint16
_ALLOWED = ("byte | bpe (with data.vocab_size) | a registered tokenizer | a tokenizer.json file "
            "or a saved Hugging Face tokenizer directory")


def validate(cfg: RunConfig) -> None:
    _check_schedule(cfg)
    _check_model(cfg)
    _check_moe(cfg)
    _check_data(cfg)
    i = cfg.init
    if i.dense_steps and cfg.model.ffn != "moe":
        raise ConfigError("init.dense_steps", i.dense_steps, "0 unless model.ffn=moe (upcycling)")


def _check_schedule(cfg: RunConfig) -> None:
    """WSD's keys only with wsd; budgets increasing, within the run, each with a stable phase
    at least as long as its cooldown (a branch starts from the stable phase)."""
    o, t = cfg.optim, cfg.trainer
    if o.schedule != "wsd":
        for key, value, default in (("decay_fraction", o.decay_fraction, 0.2),
                                    ("decay_shape", o.decay_shape, "1-sqrt")):
            if value != default:
                raise ConfigError(f"optim.{key}", value, f"the default ({default}) with "
                                  f"optim.schedule={o.schedule}, or optim.schedule=wsd",
                                  "a key of the wsd schedule")
        if t.budgets:
            raise ConfigError("trainer.budgets", list(t.budgets), f"[] with optim.schedule="
                              f"{o.schedule}, or optim.schedule=wsd",
                              "budgets are cooldown branches of a wsd run")
        return
    budgets = list(t.budgets)
    if any(not isinstance(b, int) or b < 1 for b in budgets):
        raise ConfigError("trainer.budgets", budgets, "step counts, integers >= 1")
    if any(b >= c for b, c in zip(budgets, budgets[1:])):
        raise ConfigError("trainer.budgets", budgets, "strictly increasing step counts")
    if budgets and budgets[-1] > t.max_steps:
        raise ConfigError("trainer.budgets", budgets, f"step counts up to trainer.max_steps "
                          f"({t.max_steps})", f"{budgets[-1]} is beyond the run")
    for b in [*budgets, t.max_steps]:
        cooldown = cooldown_steps(b, o.decay_fraction)
        stable = b - cooldown - o.warmup_steps
        if stable < cooldown:
            key, value = ("trainer.budgets", budgets) if b in budgets else ("trainer.max_steps", b)
            raise ConfigError(key, value, f"budgets whose stable phase (steps - cooldown - "
                              f"optim.warmup_steps) is at least their cooldown "
                              f"(optim.decay_fraction={o.decay_fraction})",
                              f"at {b} steps the cooldown ({cooldown}) is longer than the stable "
                              f"phase ({stable})")


def cooldown_steps(total: int, fraction: float) -> int:
    """The cooldown of a wsd run of `total` steps: round(fraction * total), at least 1."""
    return max(1, round(fraction * total))


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
    size = tokenizer_vocab_size(d)
    if cfg.model.vocab_size is not None and cfg.model.vocab_size < size:
        raise ConfigError("model.vocab_size", cfg.model.vocab_size, f"null (the tokenizer's) or "
                          f">= {size} (data.tokenizer={d.tokenizer})",
                          "smaller than the tokenizer's vocabulary")
    if d.source in ("text", "json", "parquet") and not d.files:
        raise ConfigError("data.files", d.files,
                          f"one or more paths or globs for data.source={d.source}")
    if d.source == "hub" and not d.name:
        raise ConfigError("data.name", d.name, "a Hugging Face dataset name for data.source=hub")


def tokenizer_file(value: str) -> Path:
    """The tokenizer.json `data.tokenizer` names (a file, or a saved tokenizer directory), or
    one ConfigError that says what was looked for."""
    path = Path(value).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
        if not path.is_file():
            raise ConfigError("data.tokenizer", value, _ALLOWED,
                              "a directory without tokenizer.json (save the tokenizer with "
                              "save_pretrained, a fast tokenizer)")
    elif not path.is_file():
        raise ConfigError("data.tokenizer", value, _ALLOWED, "no such tokenizer or file")
    return path


def tokenizer_vocab_size(data) -> int:
    """The vocabulary `data` (a DataConfig) asks for, before any training: the size a model's
    embedding must hold (a trained BPE may come out smaller). Checks the tokenizer keys."""
    name = data.tokenizer
    if name != BPE and data.vocab_size is not None:
        raise ConfigError("data.vocab_size", data.vocab_size, "null unless data.tokenizer=bpe",
                          f"data.tokenizer={name} brings its own vocabulary")
    if name == BPE:
        size = data.vocab_size or BPE_DEFAULT_VOCAB
        if not 257 <= size <= MAX_VOCAB:
            raise ConfigError("data.vocab_size", size, f"257..{MAX_VOCAB} (the 256 bytes, at "
                              "least one merge, ids stored as uint16)")
        return size
    if name in TOKENIZERS:
        return TOKENIZERS.get(name).obj().vocab_size
    path = tokenizer_file(name)
    size = _file_vocab_size(str(path), path.stat().st_mtime_ns)
    if size > MAX_VOCAB:
        raise ConfigError("data.tokenizer", name, f"a tokenizer of at most {MAX_VOCAB} tokens "
                          "(ids are stored as uint16)", f"it has {size}")
    return size


@functools.lru_cache(maxsize=8)
def _file_vocab_size(path: str, mtime_ns: int) -> int:  # keyed by mtime: edits re-read
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(path).get_vocab_size()
    except Exception as e:  # noqa: BLE001 - the library's parse errors vary by version
        raise ConfigError("data.tokenizer", path, "a Hugging Face tokenizer.json",
                          f"cannot read it: {str(e).splitlines()[0][:120]}") from None
