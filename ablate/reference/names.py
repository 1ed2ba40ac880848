"""Every registered name a config, sweep or dashboard file can use: routers and their
parts, samplers and pruners, dashboard panels, MoE presets, and the metric names a run logs."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

from ablate.reference.keys import ROUTER_KEY
from ablate.reference.text import first_sentence, yaml_text
from ablate.registry import GATES, ROUTERS, SCORES, SELECTIONS


@dataclass(frozen=True)
class Section:
    """Registered names: `id` and `where` (the key that takes them) both select it."""

    id: str
    where: str
    title: str
    rows: list[tuple[str, str]]  # (name, one line)


def sections() -> list[Section]:
    from ablate.config.load import preset_names

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
    from ablate.config.load import PRESETS_DIR, flatten, read_yaml

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
