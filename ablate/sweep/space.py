"""The search space: dotted config keys -> Optuna distributions, plus named `arm` bundles.

Each entry is one of:
  key: [a, b, c]                                  categorical
  key: {type: categorical, choices: [...]}
  key: {type: int, low: 1, high: 8, step: 1, log: false}
  key: {type: float, low: 1e-4, high: 1e-2, log: true}
  arm: {NAME: {dotted.key: value, ...}, ...}      one categorical over named override sets
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ablate.errors import ConfigError

ARM = "arm"


@dataclass(frozen=True)
class Param:
    key: str
    kind: str  # categorical | int | float
    choices: tuple = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False


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
            params.append(Param(key, "categorical", tuple(spec)))
        elif isinstance(spec, dict):
            params.append(_typed(key, spec, where))
        else:
            raise ConfigError(where, spec, "a list of choices or {type, low, high} or {type, choices}")
    return params, arms


def _typed(key: str, spec: dict[str, Any], where: str) -> Param:
    kind = spec.get("type")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices", choices, "a non-empty list", "empty search space")
        return Param(key, "categorical", tuple(choices))
    if kind not in ("int", "float"):
        raise ConfigError(f"{where}.type", kind, "categorical, int, float")
    low, high = spec.get("low"), spec.get("high")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low > high:
        raise ConfigError(f"{where}.low", low, f"numbers with low <= high (high={high})")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}.low", low, "low > 0 for a log scale")
    return Param(key, kind, (), low, high, spec.get("step"), log)


def suggest(trial, params: list[Param]) -> dict[str, Any]:
    """Ask the trial for every param: {key: value} (the arm by its name)."""
    out: dict[str, Any] = {}
    for p in params:
        if p.kind == "categorical":
            out[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.kind == "int":
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            out[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
    return out


def overrides_for(values: dict[str, Any], arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sampled values -> flat {dotted.key: value}; an arm expands into its bundle."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key == ARM:
            flat.update(arms[value])
        else:
            flat[key] = value
    return flat


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


def corner_points(params: list[Param], arms: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One value set per choice/endpoint (others at their first value), to validate every
    reachable option before the study starts."""
    first = {p.key: (p.choices[0] if p.kind == "categorical" else p.low) for p in params}
    points = [dict(first)]
    for p in params:
        options = p.choices if p.kind == "categorical" else (p.low, p.high)
        for v in options[1:] if p.kind == "categorical" else options:
            point = dict(first)
            point[p.key] = int(v) if p.kind == "int" else v
            points.append(point)
    return points


def grid_size(params: list[Param]) -> int | None:
    """Number of distinct points of an all-categorical space (None if any range is continuous)."""
    n = 1
    for p in params:
        if p.kind != "categorical":
            return None
        n *= len(p.choices)
    return n
