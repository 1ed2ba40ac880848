"""Config layering (dataclass defaults <- YAML <- dict <- dotlist) and strict validation.

Every failure becomes one `ConfigError` naming the dotted key, the bad value and what is
allowed, raised before anything is built, logged or trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ablate.config.derived import apply_budget, resolve
from ablate.config.domains import check_domains
from ablate.config.schema import PRESETS_DIR, RunConfig, preset_names
from ablate.config.validate import validate
from ablate.errors import ConfigError
from ablate.registry import ROUTERS


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(f"duplicate key {key!r} at line {line} (first at line {first})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: yaml keeps the last one
    silently, so two sweep arms with the same name, or a config key set twice, would lose
    one of them without a word. Keys merged in with `<<:` may still be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, line, seen[key])
                    seen[key] = line
                except TypeError:  # an unhashable key: the base class reports it
                    break
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(what, str(path), "an existing YAML file", "file not found")
    try:
        data = yaml.load(p.read_text(), Loader=_UniqueKeyLoader) or {}  # a SafeLoader
    except _DuplicateKey as e:
        raise ConfigError(what, str(path), "each key once per mapping", str(e)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None)
        raise ConfigError(what, str(path), "valid YAML",
                          f"malformed YAML{where}" + (f": {problem}" if problem else "")) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(what, str(path), "a readable UTF-8 YAML file",
                          f"cannot read it ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(what, str(path), "a YAML mapping of keys", "not a mapping")
    return data


def expand_dotted(data: dict[str, Any], where: str) -> dict[str, Any]:
    """{"model.d_model": 64} -> {"model": {"d_model": 64}}, at any depth.

    Decision: a config file may use dotted keys, as sweep files (`space:`, arms) and the
    command line do, and as the README writes `model.moe.router: {...}`; refusing them
    would make the same key mean something in one file and an error in another. A key
    given twice, once dotted and once nested (`model.d_model` and `model: {d_model: }`),
    is refused like any duplicate key instead of one of them winning silently."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        parts = key.split(".") if isinstance(key, str) else [key]
        _put(out, parts, value, where, prefix="")
    return out


def _put(node: dict[str, Any], parts: list[Any], value: Any, where: str, prefix: str) -> None:
    head, rest = parts[0], parts[1:]
    key = f"{prefix}{head}"
    if rest:
        child = node.setdefault(head, {})
        if not isinstance(child, dict):
            raise ConfigError(key, child, "each key set once", f"set twice in {where}")
        _put(child, rest, value, where, key + ".")
        return
    if isinstance(value, dict):
        child = node.setdefault(head, {})
        if not isinstance(child, dict):
            raise ConfigError(key, value, "each key set once", f"set twice in {where}")
        for sub, v in value.items():
            _put(child, sub.split(".") if isinstance(sub, str) else [sub], v, where, key + ".")
        return
    if head in node:
        raise ConfigError(key, value, "each key set once", f"set twice in {where}")
    node[head] = value


def parse_dotlist(overrides: Iterable[str]) -> DictConfig:
    items = list(overrides)
    for item in items:
        if "=" not in item or item.startswith(("+", "~")):
            raise ConfigError(item, "", "key=value with a dotted key, e.g. model.moe.top_k=2",
                              "not an override")
    return OmegaConf.from_dotlist(items)


def _allowed_keys(node: Any, key: str) -> str:
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    sub = OmegaConf.select(node, parent) if parent else node
    return ", ".join(sub.keys()) if isinstance(sub, DictConfig) else "see `ablate train --help`"


def _merge(layers: list[Any], schema: DictConfig) -> DictConfig:
    cfg = schema
    for layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            key = str(e.full_key or "")
            if "not in" in str(e):  # an unknown key
                value = OmegaConf.select(OmegaConf.create(layer), key, default=None)
                allowed = f"keys {_allowed_keys(schema, key)}"
                raise ConfigError(key, value, allowed, "unknown key") from None
            value = getattr(e, "value", None)
            raise ConfigError(key, value, _type_of(schema, key), "wrong type") from None
    return cfg


def _type_of(schema: DictConfig, key: str) -> str:
    """The schema's annotation of `key`, for the error message (best effort)."""
    parent, _, leaf = key.rpartition(".")
    try:
        ref = OmegaConf.select(schema, parent) if parent else schema
        annotation = ref._get_node(leaf)._metadata.ref_type  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - only the message depends on it
        return "the schema's type"
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                base: dict[str, Any] | None = None) -> RunConfig:
    """defaults <- YAML file <- base dict (sweep) <- dotlist, then validate. Returns RunConfig."""
    layers: list[Any] = []
    if path is not None:
        layers.append(expand_dotted(read_yaml(path), where=str(path)))
    if base:
        layers.append(expand_dotted(base, where="the sweep's base"))
    layers.append(parse_dotlist(overrides))
    schema = OmegaConf.structured(RunConfig)
    merged = _merge(layers, _router_typed(schema, layers))
    if merged.model.moe.preset is not None:  # lowest layer: any key set by the user wins
        layers.insert(0, preset_layer(merged.model.moe.preset, _router_names(layers)))
        merged = _merge(layers, _router_typed(schema, layers))
    cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    check_domains(cfg)  # every key's own domain, the router's included, before any use
    from ablate.registry import CONFIG_CHECKS

    apply_budget(cfg)
    resolve(cfg)  # the derived sizes, once: everything after reads them
    for name in CONFIG_CHECKS.names():  # checks a layer above registers (the router's, ...)
        CONFIG_CHECKS.get(name).obj(cfg)
    validate(cfg)
    return cfg


def preset_layer(name: str, named: list[Any] = ()) -> dict[str, Any]:
    """{"model": {"moe": <the preset's keys>}}; without its router block when the user names
    another router than the preset's (its options would otherwise be applied to that router).
    Restating the preset's own router keeps the block: the user's keys merge over it."""
    if name not in preset_names():
        raise ConfigError("model.moe.preset", name, ", ".join(preset_names()), "unknown preset")
    moe = read_yaml(PRESETS_DIR / f"{name}.yaml", what="model.moe.preset")
    own = (moe.get("router") or {}).get("name") or ROUTERS.get(None).name
    if named and str(named[-1]) != own:
        moe.pop("router", None)
    return {"model": {"moe": moe}}


def _router_names(layers: list[Any]) -> list[Any]:
    """`model.moe.router.name` of each layer that sets it, lowest first."""
    names = []
    for layer in layers:
        node = OmegaConf.create(layer)
        router = OmegaConf.select(node, "model.moe.router", default=None)
        if router is not None and not isinstance(router, DictConfig):
            raise ConfigError("model.moe.router", router, "the router's keys, e.g. "
                              "model.moe.router.name=sigmoid", "wrong type")
        if router is not None and router.get("name") is not None:
            names.append(router.get("name"))
    return names


def _router_typed(schema: DictConfig, layers: list[Any]) -> DictConfig:
    """`schema` with model.moe.router typed as the config dataclass of the router the layers
    name (the last one wins, as in the merge): merging them then checks every router key."""
    names = _router_names(layers)
    entry = ROUTERS.get(None if not names else str(names[-1]))
    schema.model.moe.router = OmegaConf.structured(entry.config)
    return schema


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain nested dicts (router dataclass included)."""
    return dataclasses.asdict(cfg)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def applicable(flat: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """`flat` (flattened `cfg`) without the keys `cfg` does not read: what a run's MLflow
    params show. A dense run has no `model.moe.*` (logging the MoE defaults, `n_experts=8`,
    would read as if they applied), an MHA run no `model.mla.*`, a run without MTP no MTP
    weight, a run from scratch no upcycling options. The whole config stays in the run's
    `config.yaml` artifact."""
    m = cfg.model
    off: list[str] = []
    if m.ffn != "moe":
        off.append("model.moe.")
    if m.attention != "mla":
        off.append("model.mla.")
    if not m.mtp.depth:
        off.append("model.mtp.weight")
    if not (cfg.init.from_checkpoint or cfg.init.dense_steps):
        off += ["init.upcycle", "init.noise"]
    if cfg.optim.schedule != "wsd":
        off += ["optim.decay_fraction", "optim.decay_shape"]
    if not cfg.trainer.budgets:
        off.append("trainer.budgets")
    return {k: v for k, v in flat.items() if not k.startswith(tuple(off))}
