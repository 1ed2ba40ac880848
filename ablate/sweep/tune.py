"""Fair arms: `tune:` in a sweep file tunes keys per arm inside the study, then trains every
repeat of each arm at the value chosen for it.

```yaml
tune:
  space: {optim.lr: [1.0e-3, 3.0e-3, 1.0e-2]}    # or {low: 1e-3, high: 1e-2, points: 3, log: true}
  fraction: 0.5                                   # of trainer.max_steps (0 < fraction <= 1)
  seeds: [0]                                      # default: the study's first seed
```

Two stages of one study. The tuning stage trains every point of the space (each arm) at
every value of the tuning grid, `fraction` of the run's steps (no budgets), on `seeds`;
its trials carry `stage: tune` (tag `ablate.stage=tune` on their runs) and never enter a
verdict. The main stage trains each point's repeats with the tuned keys at the value whose
mean objective over the tuning seeds is best (a value whose trials all failed, e.g.
diverged, is never chosen); the chosen value is the trial's own param, so it is an MLflow
param of every run of the arm. A point's main stage starts once its tuning trials are all
done or failed for good. A chosen value at the edge of a numeric grid is reported: the best
may lie outside it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from ablate.errors import ConfigError

KEYS = ("space", "fraction", "seeds")
TUNE = "tune"  # the stage of a tuning trial (its TrialRecord.stage; `ablate.stage` of its runs)


@dataclass(frozen=True)
class TuneSpec:
    space: dict[str, tuple]  # dotted key -> its grid of values, in order
    fraction: float = 0.5
    seeds: tuple[int, ...] | None = None  # None: the study's first seed

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the tuned values, first key slowest."""
        keys = list(self.space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.space.values())]

    def as_dict(self) -> dict[str, Any]:
        return {"space": {k: list(v) for k, v in self.space.items()}, "fraction": self.fraction,
                "seeds": list(self.seeds) if self.seeds is not None else None}


def parse_tune(raw: Any) -> TuneSpec | None:
    """The `tune:` block of a sweep file (None without one); one ConfigError naming the key."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("tune", raw, "a mapping with space, fraction, seeds")
    for key in raw:
        if key not in KEYS:
            raise ConfigError(f"tune.{key}", raw[key], ", ".join(KEYS), "unknown key")
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError("tune.space", space, "a mapping of dotted keys to values, e.g. "
                          "{optim.lr: [1.0e-3, 3.0e-3, 1.0e-2]}")
    grid = {str(k): _values(f"tune.space.{k}", v) for k, v in space.items()}
    fraction = raw.get("fraction", 0.5)
    if (not isinstance(fraction, (int, float)) or isinstance(fraction, bool)
            or not 0 < fraction <= 1):
        raise ConfigError("tune.fraction", fraction, "a number in (0, 1]: the share of "
                          "trainer.max_steps a tuning trial trains")
    seeds = raw.get("seeds")
    if seeds is not None:
        if (not isinstance(seeds, list) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
                or len(set(seeds)) != len(seeds)):
            raise ConfigError("tune.seeds", seeds, "a non-empty list of distinct integer seeds")
        seeds = tuple(seeds)
    return TuneSpec(grid, float(fraction), seeds)


def _values(where: str, spec: Any) -> tuple:
    """A list of values, or a log range {low, high, points, log: true} (points >= 2)."""
    if isinstance(spec, list):
        if not spec or len({repr(v) for v in spec}) != len(spec):
            raise ConfigError(where, spec, "a non-empty list of distinct values")
        return tuple(spec)
    if isinstance(spec, dict):
        extra = set(spec) - {"low", "high", "points", "log"}
        if extra:
            k = sorted(extra)[0]
            raise ConfigError(f"{where}.{k}", spec[k], "low, high, points, log", "unknown key")
        low, high, n = spec.get("low"), spec.get("high"), spec.get("points")
        log = spec.get("log", True)
        nums = all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                   for x in (low, high))
        if not nums or not 0 < low < high:
            raise ConfigError(f"{where}.low", low, f"0 < low < high (high={high})")
        if not isinstance(n, int) or isinstance(n, bool) or n < 2:
            raise ConfigError(f"{where}.points", n, "an integer >= 2")
        if log is not True:
            raise ConfigError(f"{where}.log", log, "true (a log range; list linear values)")
        ratio = (high / low) ** (1 / (n - 1))
        return tuple(float(f"{low * ratio ** i:.6g}") for i in range(n))
    raise ConfigError(where, spec, "a list of values, or {low, high, points, log: true}")


def check_tune(tune: TuneSpec, swept: set[str], seeds: list[int], finite: bool) -> None:
    """What a tuning stage needs of its study: its keys not swept, its seeds among the
    repeats', an enumerable space (every arm is tuned)."""
    for key in tune.space:
        clash = next((s for s in sorted(swept) if s == key or s.startswith(key + ".")
                      or key.startswith(s + ".")), None)
        if clash is not None:
            raise ConfigError(f"tune.space.{key}", list(tune.space[key]), "a key the space does "
                              "not sweep", f"the space sets {clash}: tune it or sweep it")
    for s in tune.seeds or ():
        if s not in seeds:
            raise ConfigError("tune.seeds", list(tune.seeds), f"seeds among the repeats' "
                              f"({', '.join(map(str, seeds))})", f"seed {s} is not one of them")
    if not finite:
        raise ConfigError("tune", tune.as_dict(), "a study whose space is enumerated (arms, lists, "
                          "int ranges, stepped float ranges; sampler auto or bruteforce)",
                          "every arm is tuned, so every point must be known")


@dataclass
class Choice:
    """The value chosen for one point, from its tuning trials."""

    values: dict[str, Any]  # tuned key -> the chosen value
    scores: dict[str, float] = field(default_factory=dict)  # grid combination (label) -> mean
    edge: list[str] = field(default_factory=list)  # "optim.lr=0.01 is the grid's largest..."


def label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in values.items())


def choose(tune: TuneSpec, results: dict[str, list[float]], direction: str) -> Choice | None:
    """The best combination by the mean of its finite objectives; `results`: label(combo) ->
    the objective of each finished tuning trial (empty: failed). None: none finished."""
    sign = 1 if direction == "minimize" else -1
    scores = {}
    for combo in tune.grid():
        vals = [v for v in results.get(label(combo), []) if math.isfinite(v)]
        if vals:
            scores[label(combo)] = sum(vals) / len(vals)
    if not scores:
        return None
    best = min(tune.grid(), key=lambda c: (sign * scores.get(label(c), math.inf)))
    if label(best) not in scores:
        return None
    edge = []
    for key, value in best.items():
        grid = list(tune.space[key])
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in grid)
        if numeric and len(grid) >= 2 and value in (min(grid), max(grid)):
            side = "largest" if value == max(grid) else "smallest"
            way = "upwards" if side == "largest" else "downwards"
            edge.append(f"{key}={value:g} is the grid's {side} value: widen tune.space.{key} "
                        f"{way}")
    return Choice(best, scores, edge)


class Stages:
    """What a study with `tune:` trains next: the tuning points of the budgeted points first
    (in the space's order), then each point's main stage once its tuning trials are all done
    or failed for good, at the values `choose` picks from them."""

    def __init__(self, tune: TuneSpec, params, study, revision: int, direction: str):
        self.tune, self.params, self.study = tune, params, study
        self.revision, self.direction = revision, direction

    def planned(self, budget: list[dict[str, Any]]) -> int:
        """How many points the budget's points make: each with its tuning grid."""
        return len(budget) * (1 + len(self.tune.grid()))

    def next(self, states, budget: list[dict[str, Any]]):
        """-> ("tune", params) | (None, params) | ("fail", params, reason) | "wait" | None."""
        from ablate.sweep.points import point_key

        grid = self.tune.grid()
        for p in budget:
            for combo in grid:
                if point_key({**p, **combo}, TUNE) not in states.taken:
                    return TUNE, {**p, **combo}
        pending = False
        for p in budget:
            if point_key(p) in states.taken:
                continue
            keys = [point_key({**p, **c}, TUNE) for c in grid]
            if not all(k in states.done or k in states.failed for k in keys):
                pending = True  # its tuning still trains (another worker): wait for it
                continue
            choice = choose(self.tune, self.results(p), self.direction)
            if choice is None:
                return "fail", {**p, **grid[0]}, ("every tuned value failed in the tuning stage "
                                                   f"({label(p)})")
            return None, {**p, **choice.values}
        return "wait" if pending else None

    def results(self, point: dict[str, Any]) -> dict[str, list[float]]:
        """label(combo) -> the objective of each COMPLETE tuning trial of `point`."""
        from ablate.sweep.record import TrialRecord

        out: dict[str, list[float]] = {}
        for t in self.study.get_trials(deepcopy=False):
            rec = TrialRecord.of(t)
            if rec.stage != TUNE or rec.revision != self.revision or not rec.is_point:
                continue
            if any(t.params.get(k) != v for k, v in point.items()):
                continue
            combo = {k: t.params.get(k) for k in self.tune.space}
            vals = out.setdefault(label(combo), [])
            if t.state.name == "COMPLETE" and t.values:
                vals.append(float(t.values[0]))
        return out

    def choice(self, point: dict[str, Any]) -> Choice | None:
        return choose(self.tune, self.results(point), self.direction)
