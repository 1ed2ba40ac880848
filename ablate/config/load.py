"""Config layering (dataclass defaults <- YAML <- dict <- dotlist) and strict validation.

Every failure becomes one `ConfigError` naming the dotted key, the bad value and what is
allowed, raised before anything is built, logged or trained.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ablate.config.schema import RunConfig
from ablate.errors import ConfigError
from ablate.registry import AUX_LOSSES, ROUTERS


def read_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(what, str(path), "an existing YAML file", "file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(what, str(path), "valid YAML", f"malformed YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(what, str(path), "a YAML mapping of keys", "not a mapping")
    return data


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


def _merge(layers: list[Any], schema: DictConfig, prefix: str = "") -> DictConfig:
    cfg = schema
    for layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            key = str(e.full_key or "")
            if "not in" in str(e):  # an unknown key
                value = OmegaConf.select(OmegaConf.create(layer), key, default=None)
                allowed = f"keys {_allowed_keys(schema, key)}"
                raise ConfigError(prefix + key, value, allowed, "unknown key") from None
            value = getattr(e, "value", None)
            raise ConfigError(prefix + key, value, _type_of(schema, key), "wrong type") from None
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
        layers.append(read_yaml(path))
    if base:
        layers.append(base)
    layers.append(parse_dotlist(overrides))
    schema = OmegaConf.structured(RunConfig)
    merged = _merge(layers, schema)
    if merged.model.moe.preset is not None:  # lowest layer: any key set by the user wins
        layers.insert(0, preset_layer(merged.model.moe.preset, _sets_router_name(layers)))
        merged = _merge(layers, schema)
    router = _router_config(merged.model.moe.router)
    _check_aux(merged.model.moe.aux)
    cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    cfg.model.moe.router = router  # the router's own dataclass, validated
    if cfg.model.ffn == "moe":
        from ablate.models.moe.checks import check_router

        check_router(cfg.model)
    from ablate.config.budget import apply_budget
    from ablate.config.validate import validate

    apply_budget(cfg)
    validate(cfg)
    return cfg


PRESETS_DIR = Path(__file__).parent / "presets" / "moe"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_layer(name: str, drop_router: bool = False) -> dict[str, Any]:
    """{"model": {"moe": <the preset's keys>}}; without its router block when the user
    names another router (its options would otherwise be applied to that router)."""
    if name not in preset_names():
        raise ConfigError("model.moe.preset", name, ", ".join(preset_names()), "unknown preset")
    moe = read_yaml(PRESETS_DIR / f"{name}.yaml", what="model.moe.preset")
    if drop_router:
        moe.pop("router", None)
    return {"model": {"moe": moe}}


def _sets_router_name(layers: list[Any]) -> bool:
    return any(OmegaConf.select(OmegaConf.create(layer), "model.moe.router.name") is not None
               for layer in layers)


def _router_config(node: DictConfig):
    name = node.get("name")
    entry = ROUTERS.get(None if name is None else str(name))
    schema = OmegaConf.structured(entry.config)
    return OmegaConf.to_object(_merge([node], schema, prefix="model.moe.router."))


def _check_aux(node: DictConfig) -> None:
    for name, weight in node.items():
        if name not in AUX_LOSSES:
            raise ConfigError(f"model.moe.aux.{name}", weight, ", ".join(AUX_LOSSES.names()),
                              "unknown aux loss")
        if weight is None or float(weight) < 0:
            raise ConfigError(f"model.moe.aux.{name}", weight, "a weight >= 0", "negative weight")


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
