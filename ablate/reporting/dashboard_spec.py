"""A dashboard file: which panels, for which study, grouped by which params; validated
into a `DashboardSpec` with one-line errors naming the bad key.

```yaml
title: MoE overview
study: quickstart             # optional: the default for --study
by: [model.moe.top_k]         # optional: group runs into arms by these params (default: `arm`)
metric: val/loss              # optional: default the study's first objective
panels:
  - curves                    # a bare name takes the panel's defaults
  - {kind: final}
  - {kind: pareto, x: [params_active, flops_per_token], title: "loss vs cost"}
```

Every entry: `kind` (see `PANELS.names()`), optional `title`/`description`, and the panel's
own options (its config dataclass in `ablate/reporting/panels/<kind>.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.errors import ConfigError
from ablate.reporting.panels import PANELS, check_options

TOP_KEYS = ("title", "description", "study", "by", "metric", "panels")
ENTRY_KEYS = ("kind", "title", "description")


@dataclass
class PanelSpec:
    kind: str
    options: Any  # the panel's config dataclass instance
    title: str | None = None
    description: str | None = None


@dataclass
class DashboardSpec:
    name: str
    title: str
    panels: list[PanelSpec]
    description: str = ""
    study: str | None = None
    by: list[str] | None = None
    metric: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


def _str(raw: dict, key: str, default: Any = None) -> Any:
    v = raw.get(key, default)
    if v is not None and not isinstance(v, str):
        raise ConfigError(key, v, "a string")
    return v


def parse_spec(raw: dict[str, Any], name: str = "dashboard") -> DashboardSpec:
    """Validate a dashboard mapping; one-line ConfigError naming the bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("dashboard", raw, "a YAML mapping with `panels`")
    for key, value in raw.items():
        if key not in TOP_KEYS:
            raise ConfigError(str(key), value, ", ".join(TOP_KEYS), "unknown dashboard key")
    by = raw.get("by")
    if isinstance(by, str):
        by = [by]
    if by is not None and (not isinstance(by, list) or not all(isinstance(b, str) for b in by)
                           or not by):
        raise ConfigError("by", raw.get("by"), "a param name or a list of them")
    study = _str(raw, "study")
    if study is not None:
        from ablate.sweep.spec import check_study_name

        check_study_name(study)
    panels_raw = raw.get("panels")
    if not isinstance(panels_raw, list) or not panels_raw:
        raise ConfigError("panels", panels_raw,
                          "a non-empty list of panels: " + ", ".join(PANELS.names()))
    panels = []
    for i, entry in enumerate(panels_raw):
        where = f"panels[{i}]"
        if isinstance(entry, str):
            entry = {"kind": entry}
        if not isinstance(entry, dict):
            raise ConfigError(where, entry, "a panel name or a mapping with `kind`")
        if "kind" not in entry:
            raise ConfigError(f"{where}.kind", None, ", ".join(PANELS.names()),
                              "missing panel kind")
        panel = PANELS.get(entry["kind"], key=f"{where}.kind")
        for key in ("title", "description"):
            if key in entry and not isinstance(entry[key], str):
                raise ConfigError(f"{where}.{key}", entry[key], "a string")
        options = check_options(panel,
                                {k: v for k, v in entry.items() if k not in ENTRY_KEYS}, where)
        panels.append(PanelSpec(entry["kind"], options, entry.get("title"),
                                entry.get("description")))
    return DashboardSpec(name=name, title=_str(raw, "title") or name, panels=panels,
                         description=_str(raw, "description", "") or "", study=study, by=by,
                         metric=_str(raw, "metric"), source=raw)


def load_spec(path: str | Path) -> DashboardSpec:
    from ablate.config.load import read_yaml

    return parse_spec(read_yaml(path, what="dashboard"), Path(path).stem)
