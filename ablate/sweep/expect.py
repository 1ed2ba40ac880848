"""`expect:` in a sweep file: the hypothesis of a study, in terms of its arms.

```yaml
expect:
  - claim: MoE beats dense at equal active parameters     # optional: what it tests
    source: Fedus et al. 2022 (Switch Transformer), Fig. 1  # optional: where it comes from
    better: moe-E8            # one of: better | lower | higher | similar
    than: dense               # (`to:` for similar)
    metric: val/loss          # default: the study's first objective
  - {lower: bias, than: switch-0.01, metric: moe/load_cv}
  - {similar: hash, to: top1, margin: 0.05}                # |difference| < margin
```

`better` is lower for a minimized objective, higher for a maximized one; `lower`/`higher`
say it outright for any metric. A metric may aggregate a run's whole curve:
`max:train/loss_spike` (also `min:`, `mean:`). The verdict comes from the paired 95% CI
of the per-seed difference (`reporting/verdicts.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ablate.errors import ConfigError

RELATIONS = ("better", "lower", "higher", "similar")
KEYS = ("claim", "source", "than", "to", "metric", "margin", *RELATIONS)
AGGREGATES = ("max", "min", "mean")


@dataclass(frozen=True)
class Expectation:
    relation: str  # better | lower | higher | similar
    arm: str  # the arm the claim is about
    other: str  # the arm it is compared with
    metric: str | None = None  # None: the study's first objective
    margin: float | None = None  # similar only
    claim: str = ""
    source: str = ""

    def metric_or(self, default: str) -> str:
        return self.metric or default

    def text(self, default_metric: str) -> str:
        m = self.metric_or(default_metric)
        if self.relation == "similar":
            return f"{self.arm} within ±{self.margin:g} of {self.other} ({m})"
        return f"{self.arm} {self.relation} than {self.other} ({m})"

    def as_dict(self) -> dict[str, Any]:
        """The sweep file's form: {better: A, than: B, metric: ..., claim: ...}."""
        other = "to" if self.relation == "similar" else "than"
        out = {self.relation: self.arm, other: self.other, "metric": self.metric,
               "margin": self.margin, "claim": self.claim, "source": self.source}
        return {k: v for k, v in out.items() if v not in (None, "")}


def parse_expect(raw: Any) -> list[Expectation]:
    """The `expect:` list -> Expectations; ConfigError (one line) for any malformed item."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise ConfigError("expect", raw, "a non-empty list of {better|lower|higher|similar: ARM, "
                          "than|to: ARM, metric: METRIC}")
    out = []
    for i, item in enumerate(raw):
        key = f"expect[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(key, item, "a mapping such as {better: ARM, than: ARM}")
        unknown = sorted(set(item) - set(KEYS))
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}", item[unknown[0]],
                              ", ".join(KEYS), "unknown key")
        relations = [r for r in RELATIONS if r in item]
        if len(relations) != 1:
            raise ConfigError(key, item, "exactly one of better, lower, higher, similar",
                              "no relation" if not relations else "several relations")
        rel = relations[0]
        other_key = "to" if rel == "similar" else "than"
        wrong = "than" if rel == "similar" else "to"
        if wrong in item:
            raise ConfigError(f"{key}.{wrong}", item[wrong], f"`{other_key}:` with `{rel}:`")
        for k in (rel, other_key):
            if not isinstance(item.get(k), str) or not item.get(k):
                raise ConfigError(f"{key}.{k}", item.get(k), "an arm name of the space")
        if item[rel] == item[other_key]:
            raise ConfigError(f"{key}.{other_key}", item[other_key],
                              f"an arm other than {item[rel]}")
        margin = item.get("margin")
        if rel == "similar":
            ok = isinstance(margin, (int, float)) and not isinstance(margin, bool)
            if not ok or not math.isfinite(margin) or margin <= 0:
                raise ConfigError(f"{key}.margin", margin,
                                  "a finite number > 0 (how close is similar)")
        elif margin is not None:
            raise ConfigError(f"{key}.margin", margin, "no margin except with `similar:`")
        metric = item.get("metric")
        if metric is not None and not isinstance(metric, str):
            raise ConfigError(f"{key}.metric", metric, "a metric name")
        for k in ("claim", "source"):
            if k in item and not isinstance(item[k], str):
                raise ConfigError(f"{key}.{k}", item[k], "text")
        out.append(Expectation(rel, item[rel], item[other_key], metric,
                               float(margin) if margin is not None else None,
                               item.get("claim", ""), item.get("source", "")))
    return out


def split_metric(metric: str) -> tuple[str | None, str]:
    """"max:train/loss_spike" -> ("max", "train/loss_spike"); "val/loss" -> (None, "val/loss")."""
    head, sep, rest = metric.partition(":")
    return (head, rest) if sep and head in AGGREGATES else (None, metric)


def check_expectations(expect: list[Expectation], arms: dict, objective_metric: str) -> None:
    """Arms that exist, metrics a run logs; run before anything is created."""
    from ablate.tracking.metrics import check_metric

    for i, e in enumerate(expect):
        key = f"expect[{i}]"
        if not arms:
            raise ConfigError(key, e.as_dict(), "a space with named arms (`space: {arm: ...}`)",
                              "expectations compare arms")
        for k, arm in ((e.relation, e.arm), ("to" if e.relation == "similar" else "than", e.other)):
            if arm not in arms:
                raise ConfigError(f"{key}.{k}", arm, ", ".join(arms), "not an arm of the space")
        agg, name = split_metric(e.metric_or(objective_metric))
        check_metric(name, f"{key}.metric")
