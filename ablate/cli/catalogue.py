"""Everything a user can name, listed from where it is defined (`ablate config keys`).

Config keys come from the schema dataclasses: type, default, domain (`ablate.config.domains`)
and the `help=` each field declares; `model.moe.router.*` from the router config dataclasses,
with the router part that reads each option (the parts' `options`); `model.moe.aux.<loss>`
from the aux-loss registry. Then every registered name a config, sweep or dashboard file
can use: routers and their parts, samplers and pruners, dashboard panels, MoE presets, and
the metric names a run logs. Nothing here is a second copy that could drift: a new field,
router, panel or preset shows up the moment it exists.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ablate.config.domains import Weights, domain_of, field_types, help_of
from ablate.config.schema import RunConfig
from ablate.errors import ConfigError
from ablate.registry import AUX_LOSSES, GATES, ROUTERS, SCORES, SELECTIONS

MAX_SUMMARY = 160  # characters of a docstring's first sentence shown as one line


def yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return str(value)


def first_sentence(obj: Any, fallback: str = "") -> str:
    """The first sentence of `obj`'s own docstring (not inherited, not dataclass-generated);
    else of the function `fallback` in its module; else of its module."""
    doc = vars(obj).get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if doc and isinstance(obj, type) and doc.startswith(obj.__name__ + "("):
        doc = None  # dataclasses write the signature where there is no docstring
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if not doc and fallback and module is not None:
        doc = getattr(getattr(module, fallback, None), "__doc__", None)
    if not doc and module is not None and obj is not None:
        doc = module.__doc__
    if not doc:
        return ""
    para = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    para = re.sub(r"`([^`<]+?)\s*<[^>]+>`__", r"\1", para)  # reST links: their text
    first = re.split(r"(?<=[a-z0-9)\]])\.\s+(?=[A-Z])", para, maxsplit=1)[0].rstrip(".:")
    return first if len(first) <= MAX_SUMMARY else first[:MAX_SUMMARY].rsplit(" ", 1)[0] + " ..."


def columns(rows: list[tuple[str, ...]], indent: str = "") -> list[str]:
    """Every column but the last padded to its widest cell; the last one is left as is."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [indent + "  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]).rstrip()
            for r in rows]


# -- config keys ----------------------------------------------------------------------------
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


# -- registered names -----------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """Registered names: `id` and `where` (the key that takes them) both select it."""

    id: str
    where: str
    title: str
    rows: list[tuple[str, str]]  # (name, one line)


def sections() -> list[Section]:
    from ablate.config.schema import preset_names

    parts = [Section("routers", "model.moe.router.name", "routers (model.moe.router.name: a "
                     "bundle of parts; any model.moe.router.* key can be set on top)",
                     [(n, _router_line(n)) for n in ROUTERS.names()])]
    for registry, key, what in ((SCORES, "score", "router scores"),
                                (SELECTIONS, "select", "router selections"),
                                (GATES, "gate", "router gates")):
        parts.append(Section(what.split()[1], f"{ROUTER_KEY}.{key}",
                             f"{what} ({ROUTER_KEY}.{key})",
                             [(n, first_sentence(registry.get(n).obj)) for n in registry.names()]))
    parts += [_optuna_section("samplers"), _optuna_section("pruners"), _panels(),
              Section("presets", "model.moe.preset", "MoE presets (model.moe.preset: keys set "
                      "under model.moe; any key you set wins)",
                      [(n, _preset_line(n)) for n in preset_names()]),
              _metrics()]
    return parts


def _router_line(name: str) -> str:
    entry, base = ROUTERS.get(name), ROUTERS.get(None).config
    changed = []
    if entry.config is not None:
        ours, theirs = entry.config(), base()
        changed = [f"{f.name}={yaml_text(getattr(ours, f.name))}" for f in dataclasses.fields(base)
                   if f.name != "name" and getattr(ours, f.name) != getattr(theirs, f.name)]
    doc = first_sentence(entry.config) or first_sentence(entry.obj)
    return "; ".join(filter(None, [" ".join(changed), doc]))


_OPTUNA_NOTES = {  # what ablate adds to the Optuna class
    "auto": "the default: bruteforce for a finite space, else tpe",
    "bruteforce": "every point of a finite space once, in sweep-file order (first key slowest)",
    "grid": "the same as bruteforce",
    "tpe": "TPE, constant_liar on so that parallel workers do not propose the same point",
    "patient": "median, stopping a trial only after `patience` (default 2) bad validations",
}


def _optuna_section(kind: str) -> Section:
    from ablate.sweep import spec, study

    names = spec.SAMPLERS if kind == "samplers" else spec.PRUNERS
    classes = study.SAMPLERS if kind == "samplers" else study.PRUNERS
    module = f"optuna.{kind}"
    rows = []
    for name in names:
        cls = classes.get(name)
        optuna = f"{module}.{cls}" if cls else ""
        text = _OPTUNA_NOTES.get(name) or (
            first_sentence(getattr(importlib.import_module(module), cls)) if cls else "")
        rows.append((name, f"{text} ({optuna})" if optuna else text))
    key, seed = kind[:-1], " seed: N," if kind == "samplers" else ""
    return Section(kind, f"{key}.name", f"{kind} (sweep file: {key}: {{name: NAME,{seed} options: "
                   "{...}}; the options are the Optuna class's arguments)", rows)


def _panels() -> Section:
    from ablate.reporting.panels import PANELS

    rows = []
    for name in PANELS.names():
        e = PANELS.get(name)
        opts = ", ".join(f.name for f in dataclasses.fields(e.config))
        rows.append((name, " ".join(filter(None, [e.title + ".", e.description,
                                                  f"(options: {opts})" if opts else ""]))))
    return Section("panels", "kind", "dashboard panels (dashboard file: panels: [NAME, or {kind: "
                   "NAME, title: ..., options}])", rows)


def _preset_line(name: str) -> str:
    from ablate.config.load import flatten, read_yaml
    from ablate.config.schema import PRESETS_DIR

    path = PRESETS_DIR / f"{name}.yaml"
    sets = " ".join(f"{k}={yaml_text(v)}" for k, v in flatten(read_yaml(path)).items())
    first = path.read_text().splitlines()[0] if path.read_text() else ""
    title = first[1:].split(":")[0].strip() if first.startswith("#") else ""
    return f"{title}: {sets}" if title else sets


def _metrics() -> Section:
    from ablate.tracking import metrics as m

    rows = list(m.FIXED.items())
    rows += [(f"moe/{s}", f"{what}; mean over MoE layers, per layer moe/l<i>/{s}")
             for s, what in m.MOE_STATS.items()]
    losses = m._loss_names()
    rows += [(f"train/aux/{n}", "an aux loss, unscaled") for n in losses]
    rows += [(f"train/aux_weighted/{n}", "an aux loss times its weight") for n in losses]
    return Section("metrics", "objective.metric", "metrics (objective.metric, expect: metric, "
                   "dashboards, MLflow; in expect: also max:/min:/mean: of a curve)", rows)


# -- the listing ----------------------------------------------------------------------------
def listing(prefix: str = "") -> str:
    """`ablate config keys PREFIX`: the config keys and sections (or their rows) it selects."""
    keys = [k for k in config_keys() if k.key.startswith(prefix)]
    out = []
    if keys:
        out.append("config keys: key=value on the command line, or in a config file or a sweep "
                   "file (base, space, arms)")
        out += columns([("KEY", "TYPE", "DEFAULT", "HELP")] + [
            (k.key, k.type, k.default, f"{k.help} (allowed: {k.allowed})") for k in keys])
    for s in sections():
        whole = not prefix or s.id.startswith(prefix) or s.where.startswith(prefix)
        rows = s.rows if whole else [r for r in s.rows if r[0].startswith(prefix)]
        if rows:
            out += ["", s.title] + columns(rows, indent="  ")
    if not out:
        ids = ", ".join(s.id for s in sections())
        raise ConfigError("PREFIX", prefix, f"the start of a config key (model.moe, data, ...) or "
                          f"one of {ids}", "matches nothing")
    return "\n".join(out).lstrip("\n") + "\n"
