"""Everything a sweep can check before it creates anything (study, parent run, cache):
one ConfigError (one line, exit 2) for the first problem found.

- the spec's objectives are metrics a run logs (`ablate.tracking.metrics`), and a `moe/`
  metric is not asked of a dense arm;
- the sampler and pruner options fit their constructors;
- no `key=value` override sets a key the space sweeps (MLflow would record the override
  while Optuna records the sampled value);
- an exhaustive sampler (bruteforce, grid) gets a finite space;
- the base config and every value each parameter can take (each arm, each choice, every
  value of an int range or a stepped float range, the ends of a continuous one) resolve
  to a valid config, including the router check;
- the data and devices those configs need exist (`check_machine`).
"""

from __future__ import annotations

from ablate.errors import ConfigError
from ablate.sweep import space as sp
from ablate.sweep.study import check_pruner, check_sampler
from ablate.sweep.tune import TUNE, check_tune
from ablate.tracking.metrics import check_metric
from ablate.training.preflight import check_environment

EXHAUSTIVE = ("bruteforce", "grid")


def check_overrides(overrides: list[str], params, arms) -> None:
    swept = sp.swept_keys(params, arms)
    for item in overrides:
        key = item.split("=", 1)[0]
        clash = next((s for s in sorted(swept) if s == key or s.startswith(key + ".")
                      or key.startswith(s + ".")), None)
        if clash is not None:
            raise ConfigError(key, item.split("=", 1)[1], "a key the sweep's space does not set",
                              f"the space sets {clash} in every trial; change the sweep file, "
                              "or sweep it in a new study")


def check_objective_names(spec) -> None:
    """Each objective is a metric a run logs (before the expectations that default to it)."""
    for i, obj in enumerate(spec.objectives):
        key = "objective.metric" if len(spec.objectives) == 1 else f"objectives[{i}].metric"
        check_metric(obj.metric, key)


def check_objectives(spec, configs: list) -> None:
    for i, obj in enumerate(spec.objectives):
        key = "objective.metric" if len(spec.objectives) == 1 else f"objectives[{i}].metric"
        if obj.metric.startswith("moe/") and any(c.model.ffn != "moe" for c in configs):
            raise ConfigError(key, obj.metric, "a metric every arm logs (a dense arm logs no moe/ "
                              "metric)", "not logged by the dense arms")
        if obj.metric.startswith("train/mtp/d"):  # depth k is logged only where mtp.depth >= k
            k = int(obj.metric.rsplit("d", 1)[1])
            if any(c.model.mtp.depth < k for c in configs):
                raise ConfigError(key, obj.metric,
                                  f"a metric every arm logs (model.mtp.depth >= {k} "
                                  "in every arm)", "not logged by every arm")


def check_sampler_fits_space(spec, params) -> None:
    name = spec.sampler["name"]
    if name in EXHAUSTIVE:
        continuous = [p.key for p in params if not p.finite]
        if continuous:
            raise ConfigError("sampler.name", name,
                              "tpe, random, gp, cmaes, nsga2 for a continuous "
                              f"range, or give space.{continuous[0]} a step or choices",
                              f"space.{continuous[0]} is continuous: it cannot be enumerated")
    check_sampler(spec.sampler, len(spec.objectives))  # options vs the Optuna constructors
    check_pruner(spec.pruner)


def check_configs(sweep) -> list:
    """Resolve every value a trial can take (with `tune:`, each tuned value at the main stage
    and at the tuning stage's length); -> the distinct configs (for the env checks)."""
    configs, seen = [sweep.base_cfg], set()
    tune = sweep.spec.tune
    combos = tune.grid() if tune is not None else [{}]
    stages = (None, TUNE) if tune is not None else (None,)
    for point in sp.check_points(sweep.params):
        for combo in combos:
            for stage in stages:
                cfg = _resolved(sweep, {**point, **combo}, stage)
                key = repr(cfg)
                if key not in seen:
                    seen.add(key)
                    configs.append(cfg)
    return configs


def _resolved(sweep, values: dict, stage):
    """config_for, with the error of a tuned key named as the tuning block's."""
    try:
        return sweep.config_for(values, stage)
    except ConfigError as e:
        tuned = next((k for k in sweep.tuned if e.key == k or e.key.startswith(k)), None)
        if tuned is None:
            raise
        raise ConfigError(f"tune.space.{tuned}", e.value, e.allowed, e.why) from None


def check_machine(configs: list, tracking_uri: str | None = None) -> None:
    """What the distinct configs need from this machine (data, devices, stores): each once."""
    seen = set()
    for cfg in configs:  # data, devices, stores: the same for most arms, check each once
        key = repr((cfg.data, cfg.trainer, cfg.init, cfg.tracking))
        if key not in seen:
            seen.add(key)
            check_environment(cfg, tracking_uri)


def preflight(sweep) -> None:
    from ablate.sweep.expect import check_expectations

    spec = sweep.spec
    check_expectations(spec.expect, sweep.arms, spec.objectives[0].metric)
    check_sampler_fits_space(spec, sweep.params)
    if spec.tune is not None:
        check_tune(spec.tune, sp.swept_keys(sweep.params, sweep.arms), sweep.seeds(),
                   sweep.enumerate)
    configs = check_configs(sweep)
    check_objectives(spec, configs)
    check_machine(configs, sweep.tracking_uri_flag)
