"""Every config key, from the schema dataclasses: type, default, domain
(`ablate.config.domains`) and the `help=` each field declares; `model.moe.router.*` from the
router config dataclasses, with the router part that reads each option; `model.moe.aux.<loss>`
from the aux-loss registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ablate.config.domains import Weights, domain_of, field_types, help_of
from ablate.config.schema import RunConfig
from ablate.reference.text import first_sentence, yaml_text
from ablate.registry import AUX_LOSSES, GATES, ROUTERS, SCORES, SELECTIONS

ROUTER_KEY = ROUTERS.key.rsplit(".", 1)[0]  # model.moe.router: its dataclass depends on its name


@dataclass(frozen=True)
class Key:
    key: str  # dotted, as typed on the command line
    type: str
    default: str
    allowed: str
    help: str


def config_keys() -> list[Key]:
    """Every dotted key of the run config, the router's and the aux weights included."""
    return list(_walk(RunConfig, ""))


def _walk(cls: type, prefix: str) -> Iterator[Key]:
    types = field_types(cls)
    for f in dataclasses.fields(cls):
        key, default = prefix + f.name, _default(f)
        if key == ROUTER_KEY:  # the default router's dataclass, then what other routers add
            yield from _router_keys(key + ".")
        elif dataclasses.is_dataclass(default):
            yield from _walk(type(default), key + ".")
        elif isinstance(domain_of(cls, f.name), Weights):
            yield from _weight_keys(key + ".", domain_of(cls, f.name), default,
                                    help_of(cls, f.name))
        else:
            yield _key(cls, f.name, key, default, *types[f.name])


def _key(cls: type, name: str, key: str, default: Any, kind: type, optional: bool,
         note: str = "") -> Key:
    domain = domain_of(cls, name)
    if domain is not None:
        allowed = domain.allowed(name, kind is int)
    elif kind is bool:
        allowed = "true, false"
    else:
        allowed = f"a {getattr(kind, '__name__', kind)}"
    kind_name = getattr(kind, "__name__", str(kind))
    return Key(key, kind_name + ("|null" if optional else ""), yaml_text(default), allowed,
               note + help_of(cls, name))


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _router_keys(prefix: str) -> Iterator[Key]:
    """The default router's config, each option tagged with the parts that read it; then
    the keys a plugin router's config adds (tagged with that router)."""
    base = ROUTERS.get(None).config
    users = _option_users()
    for f in dataclasses.fields(base):
        note = f"[{users[f.name]}] " if f.name in users else ""
        yield _key(base, f.name, prefix + f.name, _default(f), *field_types(base)[f.name], note)
    seen = {f.name for f in dataclasses.fields(base)}
    for name in ROUTERS.names():
        cfg = ROUTERS.get(name).config
        for f in dataclasses.fields(cfg) if cfg else ():
            if f.name not in seen:
                seen.add(f.name)
                yield _key(cfg, f.name, prefix + f.name, _default(f), *field_types(cfg)[f.name],
                           f"[name={name}] ")


def _option_users() -> dict[str, str]:
    """{option: "select=group_limited"}: which part (or router) reads each router option."""
    users: dict[str, dict[str, list[str]]] = {}
    parts = ((ROUTERS, "name"), (SCORES, "score"), (SELECTIONS, "select"), (GATES, "gate"))
    for registry, key in parts:
        for name in registry.names():
            for option in getattr(registry.get(name).obj, "options", ()):
                users.setdefault(option, {}).setdefault(key, []).append(name)
    return {opt: ", ".join(f"{k}={'|'.join(names)}" for k, names in by.items())
            for opt, by in users.items()}


def _weight_keys(prefix: str, domain: Weights, defaults: dict, what: str) -> Iterator[Key]:
    for name in domain.names():
        entry = AUX_LOSSES.get(name) if domain.names == AUX_LOSSES.names else None
        doc = first_sentence(entry.obj, fallback=f"{name}_loss") if entry else ""
        yield Key(prefix + name, "float", yaml_text(defaults.get(name, 0)),
                  domain.weight.allowed(name, False), f"{what}: {doc}" if doc else what)
