"""A `tune:` stage read back: each arm's objective at every tuned value (mean ± 95% CI over the
tuning seeds), the value chosen for its main stage, and a warning where the choice sits at
the edge of a numeric grid (the best may lie beyond it). Its trials never enter a verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ablate.reporting.stats import Summary, mean_ci
from ablate.reporting.study_data import StudyData
from ablate.sweep import record
from ablate.sweep.tune import TuneSpec, choose, label, parse_tune


@dataclass
class TuningView:
    metric: str
    keys: tuple[str, ...]
    grid: list[dict[str, Any]]  # the tuned combinations, in the grid's order
    arms: dict[str, dict[str, Summary]]  # arm -> label(combo) -> objective over tuning seeds
    chosen: dict[str, str] = field(default_factory=dict)  # arm -> label(chosen combo)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        def js(s: Summary) -> dict:
            ok = math.isfinite(s.half)
            return {"mean": s.mean if math.isfinite(s.mean) else None, "n": s.n,
                    "ci": [s.lo, s.hi] if ok else None}

        return {"metric": self.metric, "keys": list(self.keys),
                "arms": {a: {"values": {k: js(s) for k, s in by.items()},
                             "chosen": self.chosen.get(a)} for a, by in self.arms.items()},
                "warnings": self.warnings}


def tune_spec(data: StudyData) -> TuneSpec | None:
    """The `tune:` block of the study's newest revision, as it was run."""
    revs = record.revisions(data.study) if data.study is not None else []
    raw = revs[-1].definition.get("tune") if revs else None
    return parse_tune({k: v for k, v in raw.items() if v is not None}) if raw else None


def tuning_view(data: StudyData, metric: str | None = None) -> TuningView | None:
    """None for a study without a tuning stage."""
    tune = tune_spec(data)
    if tune is None:
        return None
    metric = metric or data.metric
    keys = tuple(tune.space)
    arms: dict[str, dict[str, list[float]]] = {}
    for r in data.tuning:
        if r.state != "COMPLETE":
            continue
        v = r.value(metric)
        combo = label({k: r.params.get(k) for k in keys})
        arms.setdefault(r.arm, {}).setdefault(combo, [])
        if v is not None and math.isfinite(v):
            arms[r.arm][combo].append(float(v))
    view = TuningView(metric, keys, tune.grid(),
                      {a: {c: mean_ci(vs) for c, vs in by.items()} for a, by in arms.items()})
    for arm, by in arms.items():
        choice = choose(tune, by, data.direction(metric))
        if choice is not None:
            view.chosen[arm] = label(choice.values)
            view.warnings += [f"arm {arm}: {w}" for w in choice.edge]
    return view


def _cell(s: Summary | None, chosen: bool) -> str:
    if s is None or not math.isfinite(s.mean):
        return "failed" if s is not None else ""
    text = f"{s.mean:.4f}" + (f" ± {s.half:.4f}" if math.isfinite(s.half) else "")
    return text + (" *" if chosen else "")


def to_rich(view: TuningView):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    combos = [label(c) for c in view.grid]
    table = Table(title=f"tuning stage: {view.metric} at each tuned value (mean ± 95% CI over the "
                        "tuning seeds; * chosen for the arm's main stage)", header_style="bold")
    table.add_column("arm", no_wrap=True)
    for c in combos:
        table.add_column(c, justify="right")
    for arm, by in view.arms.items():
        table.add_row(arm, *(_cell(by.get(c), view.chosen.get(arm) == c) for c in combos))
    return Group(table, *(Text(f"warning: {w}", style="yellow") for w in view.warnings))


def to_markdown(view: TuningView) -> str:
    combos = [label(c) for c in view.grid]
    lines = [f"**tuning stage**: {view.metric} at each tuned value (mean ± 95% CI over the tuning "
             "seeds; * chosen)", "", "| arm | " + " | ".join(combos) + " |",
             "|---" * (len(combos) + 1) + "|"]
    for arm, by in view.arms.items():
        lines.append(f"| {arm} | " + " | ".join(_cell(by.get(c), view.chosen.get(arm) == c)
                                               for c in combos) + " |")
    lines += [f"\nwarning: {w}" for w in view.warnings]
    return "\n".join(lines) + "\n"
