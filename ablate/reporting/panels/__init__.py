"""Dashboard panels: one module per kind, registered by name like the routers.

A panel is a function `render(cfg, ctx) -> list[block]` with a config dataclass of its
options; a block is a plotly Figure, `Html` (a fragment) or `Note` (a sentence shown where
a plot cannot be drawn, e.g. "needs 2 completed trials"). Register your own with

```python
from dataclasses import dataclass
from ablate.reporting.panels import PANELS, Note

@dataclass
class MyConfig:
    metric: str = "val/ppl"

@PANELS.register("my_panel", MyConfig, title="Perplexity", description="...")
def my_panel(cfg: MyConfig, ctx):
    return [Note(f"{len(ctx.data.complete())} completed runs")]
```
"""

from __future__ import annotations

import dataclasses
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ablate.errors import ConfigError
from ablate.registry import Registry

# Tableau 10 (distinct at a glance, colour-blind aware), then more for studies with many arms
PALETTE = ["#4E79A7", "#F28E2B", "#59A14F", "#E15759", "#B07AA1", "#76B7B2", "#EDC948",
           "#FF9DA7", "#9C755F", "#BAB0AC", "#1F77B4", "#8C564B", "#17BECF", "#BCBD22", "#7F7F7F"]


class Note(str):
    """A sentence in place of a plot."""


class Html(str):
    """An HTML fragment (a table)."""


@dataclass(frozen=True)
class PanelEntry:
    name: str
    render: Callable[[Any, Context], list]
    config: type
    title: str
    description: str


class PanelRegistry(Registry):
    """The router registry's lookup and lazy loading; entries carry a title and description."""

    def register(self, name: str, config: type, title: str, description: str = ""):
        def deco(fn):
            self._entries[name] = PanelEntry(name, fn, config, title, description)
            return fn

        return deco


# every module of this package registers panels, imported on the first lookup (a new panel is
# a new file here, or joins the module of its kind: `optuna` holds Optuna's three)
_BUILTINS = tuple(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__))
PANELS = PanelRegistry("panel", "kind", builtins=_BUILTINS)


@dataclass
class Context:
    """What every panel sees: the study's rows and one colour per arm, shared by all panels."""

    data: Any  # ablate.reporting.collect.StudyData
    metric: str
    arms: list[str]  # display order: best first
    colors: dict[str, str] = field(default_factory=dict)

    def runs(self, arm: str, complete: bool = True) -> list:
        rows = self.data.complete() if complete else self.data.with_runs()
        return [r for r in rows if r.arm == arm and r.run_id]

    def arms_with_runs(self, complete: bool = False) -> list[str]:
        return [a for a in self.arms if self.runs(a, complete)]


def make_context(data, metric: str | None = None) -> Context:
    metric = metric or data.metric
    arms = data.arms(metric)
    sweep = data.sweep_order()
    colors = {a: PALETTE[sweep.index(a) % len(PALETTE)] if a in sweep else PALETTE[0] for a in arms}
    return Context(data, metric, arms, colors)


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def layout(fig, height: int = 420, **kw):
    """The look shared by all panels."""
    fig.update_layout(template="plotly_white", height=height,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      legend={"orientation": "v"}, font={"size": 12}, **kw)
    return fig


def check_options(entry: PanelEntry, options: dict[str, Any], where: str):
    """Build the panel's config dataclass from YAML options; one-line ConfigError naming the
    bad key (`panels[2].metrics`)."""
    fields = {f.name: f for f in dataclasses.fields(entry.config)}
    values = {}
    for key, value in options.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key}", value, ", ".join(fields) or "no options",
                              f"unknown option of panel {entry.name!r}")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        values[key] = _coerce(value, default, f"{where}.{key}")
    return entry.config(**values)


def _coerce(value: Any, default: Any, key: str) -> Any:
    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(key, value, "true or false")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(key, value, "an integer")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(key, value, "a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(key, value, "a string")
        return value
    if isinstance(default, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, value, "a list of strings")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(key, value, "a mapping")
        return value
    return value
