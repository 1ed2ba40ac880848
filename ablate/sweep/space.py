"""The search space: dotted config keys -> Optuna distributions, plus named `arm` bundles.

Each entry is one of:
  key: [a, b, c]                                  categorical
  key: {type: categorical, choices: [...]}
  key: {type: int, low: 1, high: 8, step: 1, log: false}
  key: {type: float, low: 1e-4, high: 1e-2, log: true}        (continuous)
  key: {type: float, low: 0.1, high: 0.5, step: 0.1}          (a finite grid)
  arm: {NAME: {dotted.key: value, ...}, ...}      one categorical over named override sets

A space is *finite* when every entry is: categorical, an int range, or a float range with
a step. Finite spaces are enumerated point by point (`points`), never sampled, unless the
sweep file asks for a sampler.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator

from ablate.errors import ConfigError

ARM = "arm"
MAX_CHECKED = 2000  # values of one range validated one by one before anything runs


@dataclass(frozen=True)
class Param:
    key: str
    kind: str  # categorical | int | float
    choices: tuple = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False

    @property
    def finite(self) -> bool:
        return self.kind != "float" or self.step is not None

    def values(self) -> list[Any] | None:
        """Every value this parameter can take, or None for a continuous range."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(round((self.high - self.low) / self.step))
        return [_round(self.low + i * self.step, self.step) for i in range(n + 1)]

    def distribution(self):
        import optuna.distributions as d

        if self.kind == "categorical":
            return d.CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)


def _round(x: float, step: float) -> float:
    """low + i*step without float drift (0.1 + 2*0.1 = 0.30000000000000004)."""
    digits = max(0, -math.floor(math.log10(abs(step)))) + 6 if step else 12
    return round(x, digits)


def parse_space(space: dict[str, Any]) -> tuple[list[Param], dict[str, dict[str, Any]]]:
    """-> (params, arms). Raises ConfigError naming `space.<key>` on anything malformed."""
    params: list[Param] = []
    arms: dict[str, dict[str, Any]] = {}
    for key, spec in space.items():
        where = f"space.{key}"
        if key == ARM:
            if not isinstance(spec, dict) or not spec:
                raise ConfigError(where, spec, "a mapping of arm names to {dotted.key: value}")
            for name, overrides in spec.items():
                if not isinstance(overrides, dict):
                    raise ConfigError(f"{where}.{name}", overrides, "a mapping {dotted.key: value}")
                arms[str(name)] = dict(overrides)
            params.append(Param(ARM, "categorical", tuple(arms)))
        elif isinstance(spec, list):
            if not spec:
                raise ConfigError(where, spec, "a non-empty list of choices", "empty search space")
            params.append(Param(key, "categorical", _distinct(where, spec)))
        elif isinstance(spec, dict):
            params.append(_typed(key, spec, where))
        else:
            raise ConfigError(where, spec,
                              "a list of choices or {type, low, high} or {type, choices}")
    for p in params:  # an arm and an entry setting one key: which value wins would be a guess
        owner = next((a for a, bundle in arms.items() if p.key != ARM and p.key in bundle), None)
        if owner is not None:
            raise ConfigError(f"space.{p.key}", list(p.choices) or "a range", "a key no arm sets",
                              f"arm {owner} sets {p.key} too")
    return params, arms


def _distinct(where: str, choices: list) -> tuple:
    seen = []
    for c in choices:
        if c in seen:  # two equal choices would be one point counted twice
            raise ConfigError(where, choices, "distinct choices", f"{c!r} is listed twice")
        seen.append(c)
    return tuple(choices)


def _number(where: str, value: Any, kind: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (kind == "int" and value != int(value)):
        raise ConfigError(where, value, f"a finite {'integer' if kind == 'int' else 'number'}")
    return value


def _typed(key: str, spec: dict[str, Any], where: str) -> Param:
    extra = set(spec) - {"type", "choices", "low", "high", "step", "log"}
    if extra:
        k = sorted(extra)[0]
        raise ConfigError(f"{where}.{k}", spec[k],
                          "type, choices, low, high, step, log", "unknown key")
    kind = spec.get("type")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices", choices, "a non-empty list", "empty search space")
        return Param(key, "categorical", _distinct(f"{where}.choices", choices))
    if kind not in ("int", "float"):
        raise ConfigError(f"{where}.type", kind, "categorical, int, float")
    low = _number(f"{where}.low", spec.get("low"), kind)
    high = _number(f"{where}.high", spec.get("high"), kind)
    if low > high:
        raise ConfigError(f"{where}.low", low, f"numbers with low <= high (high={high})")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log", log, "true or false")
    if log and low <= 0:
        raise ConfigError(f"{where}.low", low, "low > 0 for a log scale")
    if step is not None:
        step = _number(f"{where}.step", step, kind)
        if step <= 0:
            raise ConfigError(f"{where}.step", step, "a number > 0")
        if log:  # Optuna: "The parameter `step` is not supported when `log` is true"
            raise ConfigError(f"{where}.step", step, "no step with log: true (a log range is "
                              "continuous, or list the values as choices)")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise ConfigError(f"{where}.high", high, f"low + a whole number of steps ({low} + "
                              f"k * {step})", "the range does not end on its step grid")
    if kind == "int" and log and step not in (None, 1):
        raise ConfigError(f"{where}.step", step, "1 with log: true")
    return Param(key, kind, (), low, high, step, log)


def fixed_distributions(params: list[Param]) -> dict[str, Any]:
    """{key: Optuna distribution}: `study.ask(...)` samples every parameter at once."""
    return {p.key: p.distribution() for p in params}


def overrides_for(values: dict[str, Any], arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sampled values -> flat {dotted.key: value}; an arm expands into its bundle."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key == ARM:
            flat.update(arms[value])
        else:
            flat[key] = value
    return flat


def swept_keys(params: list[Param], arms: dict[str, dict[str, Any]]) -> set[str]:
    """Every config key a trial's point sets: the space's keys and every arm's keys."""
    return {p.key for p in params if p.key != ARM} | {k for bundle in arms.values() for k in bundle}


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def check_points(params: list[Param]) -> Iterator[dict[str, Any]]:
    """Value sets that together try every value a trial can take: each parameter's every
    value (at most MAX_CHECKED, evenly spread, ends included; a continuous range: its two
    ends) with the others at their first value. Validating each one before the study
    starts catches an arm or a range value that no trial could run."""
    first = {p.key: p.values()[0] if p.values() else p.low for p in params}
    yield dict(first)
    for p in params:
        values = p.values() or [p.low, p.high]
        if len(values) > MAX_CHECKED:
            idx = sorted({round(i * (len(values) - 1) / (MAX_CHECKED - 1))
                          for i in range(MAX_CHECKED)})
            values = [values[i] for i in idx]
        for v in values:
            yield {**first, p.key: v}


def grid_size(params: list[Param]) -> int | None:
    """Number of distinct points of a finite space (None if any range is continuous)."""
    n = 1
    for p in params:
        values = p.values()
        if values is None:
            return None
        n *= len(values)
    return n


def points(params: list[Param]) -> Iterator[dict[str, Any]]:
    """Every point of a finite space, in the order of the sweep file (first key slowest)."""
    keys = [p.key for p in params]
    for combo in itertools.product(*(p.values() for p in params)):
        yield dict(zip(keys, combo))
