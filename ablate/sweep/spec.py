"""A sweep file: base config, search space over dotted keys, objective(s), sampler, pruner.

```yaml
study: quickstart
base: {model: {d_model: 128}, trainer: {max_steps: 300}}   # same keys as `ablate train`
space:
  arm:                         # named bundles of overrides: one categorical choice
    dense: {model.ffn: dense}
    moe-E8-k1: {model.ffn: moe, model.moe.n_experts: 8, model.moe.top_k: 1}
  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  model.moe.top_k: [1, 2]      # a list is a categorical
objective: {metric: val/loss, direction: minimize}   # or `objectives: [...]` (Pareto)
sampler: {name: bruteforce, seed: 0}   # default: bruteforce for a finite space, else tpe
pruner: {name: none}
n_trials: 4
repeats: 3                     # seeds per point (paired across arms)
expect: [{better: moe-E8-k1, than: dense}]   # the hypothesis: a verdict per line (expect.py)
tune: {space: {optim.lr: [1.0e-3, 3.0e-3]}, fraction: 0.5}   # each arm at its own rate (tune.py)
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ablate.config.load import expand_dotted, read_yaml
from ablate.errors import ConfigError
from ablate.sweep.expect import Expectation, parse_expect
from ablate.sweep.tune import TuneSpec, parse_tune

SAMPLERS = ("auto", "tpe", "random", "gp", "cmaes", "bruteforce", "grid", "nsga2")
PRUNERS = ("none", "median", "hyperband", "successive_halving", "wilcoxon", "patient", "threshold")
DIRECTIONS = ("minimize", "maximize")
TOP_KEYS = ("study", "experiment", "base", "base_config", "space", "objective", "objectives",
            "sampler", "pruner", "n_trials", "timeout", "repeats", "expect", "tune")
STUDY_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass
class Objective:
    metric: str = "val/loss"
    direction: str = "minimize"


@dataclass
class SweepSpec:
    study: str
    base: dict[str, Any]
    space: dict[str, Any]
    objectives: list[Objective]
    # auto: enumerate a finite space (bruteforce), else TPE (resolved by the Sweep)
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "auto"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    n_trials: int = 10
    timeout: float | None = None
    repeats: int = 1
    experiment: str | None = None
    source: dict[str, Any] = field(default_factory=dict)  # the file as read, for the artifact
    expect: list[Expectation] = field(default_factory=list)  # the study's hypothesis
    tune: TuneSpec | None = None  # keys tuned per arm in a first stage of the study

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def _objectives(raw: dict[str, Any]) -> list[Objective]:
    if "objective" in raw and "objectives" in raw:
        raise ConfigError("objectives", raw["objectives"], "either `objective` or `objectives`")
    items = raw.get("objectives") or [raw.get("objective") or {}]
    if not isinstance(items, list) or not items:
        raise ConfigError("objectives", items, "a list of {metric, direction}")
    out = []
    for i, item in enumerate(items):
        key = "objective" if "objective" in raw else f"objectives[{i}]"
        if isinstance(item, str):
            item = {"metric": item}
        if not isinstance(item, dict) or set(item) - {"metric", "direction"}:
            raise ConfigError(key, item, "{metric: NAME, direction: minimize|maximize}")
        obj = Objective(**item)
        if obj.direction not in DIRECTIONS:
            raise ConfigError(f"{key}.direction", obj.direction, ", ".join(DIRECTIONS))
        out.append(obj)
    return out


def _named(raw: Any, key: str, allowed: tuple[str, ...], default: str) -> dict[str, Any]:
    if raw is None:
        raw = {"name": default}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(key, raw, f"a mapping with `name` ({', '.join(allowed)})")
    extra = set(raw) - {"name", "seed", "options"}
    if extra:
        raise ConfigError(f"{key}.{sorted(extra)[0]}", raw[sorted(extra)[0]], "name, seed, options",
                          "unknown key")
    if raw.get("name", default) not in allowed:
        raise ConfigError(f"{key}.name", raw.get("name"), ", ".join(allowed), f"unknown {key}")
    return {"name": raw.get("name", default), "seed": raw.get("seed"),
            "options": raw.get("options") or {}}


def check_study_name(name: Any, key: str = "study") -> str:
    if (not isinstance(name, str) or not name or not set(name) <= STUDY_NAME_CHARS
            or len(name) > 100):
        raise ConfigError(key, name, "1-100 characters from letters, digits, '_', '-', '.'")
    return name


def load_sweep(path: str | Path, study: str | None = None) -> SweepSpec:
    raw = read_yaml(path, what="sweep")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(key, raw[key], ", ".join(TOP_KEYS), "unknown sweep key")
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError("base", base, "a mapping of config keys")
    base = expand_dotted(base, "base")
    if raw.get("base_config"):  # the file first, `base:` over it, key by key
        base_file = expand_dotted(read_yaml(Path(path).parent / raw["base_config"]), "base_config")
        base = OmegaConf.to_container(OmegaConf.merge(base_file, base))
    space = raw.get("space") or {}
    if not isinstance(space, dict) or not space:
        raise ConfigError("space", space, "a non-empty mapping of dotted keys to choices")
    n_trials = raw.get("n_trials", 10)
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ConfigError("n_trials", n_trials, "an integer >= 1")
    repeats = raw.get("repeats", 1)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError("repeats", repeats, "an integer >= 1")
    timeout = raw.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError("timeout", timeout, "seconds > 0")
    spec = SweepSpec(
        study=check_study_name(study or raw.get("study") or Path(path).stem),
        base=base,
        space=space,
        objectives=_objectives(raw),
        sampler=_named(raw.get("sampler"), "sampler", SAMPLERS, "auto"),
        pruner=_named(raw.get("pruner"), "pruner", PRUNERS, "none"),
        n_trials=n_trials,
        timeout=timeout,
        repeats=repeats,
        experiment=raw.get("experiment"),
        source=raw,
        expect=parse_expect(raw.get("expect")),
        tune=parse_tune(raw.get("tune")),
    )
    if spec.multi_objective and spec.pruner["name"] != "none":
        raise ConfigError("pruner.name", spec.pruner["name"], "none for multi-objective studies",
                          "Optuna cannot prune multi-objective trials")
    return spec
