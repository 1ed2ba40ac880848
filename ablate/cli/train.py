"""`ablate train`: one run from a config file and overrides, logged as one MLflow run."""

from __future__ import annotations

from ablate.cli.common import (
    add_plugin_arg,
    add_store_args,
    hub_mode,
    join_process_group,
    split_config,
)


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train one model, logged as one MLflow run",
                       description="Train one model and log it to MLflow. CONFIG.yaml and "
                       "key=value overrides are layered over the defaults.")
    t.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                   help="a config file first (optional), then dotted overrides "
                   "(see `ablate config keys`)")
    t.add_argument("--experiment", help="MLflow experiment (default: ablate-train)")
    add_store_args(t, storage=None)
    add_plugin_arg(t)


def run(a) -> int:
    from ablate.config.load import load_config
    from ablate.registry import load_plugins
    from ablate.training.preflight import check_environment

    load_plugins(a.plugin)
    path, overrides = split_config(a.overrides)
    cfg = load_config(path, overrides)
    check_environment(cfg, a.tracking_uri)  # home, store URL, data, devices: nothing exists yet
    from ablate.tracking.store import check_reachable

    check_reachable(a.tracking_uri or cfg.tracking.tracking_uri)
    hub_mode(cfg.data.source)
    join_process_group(cfg.trainer.accelerator)  # torchrun: every rank trains this run
    from ablate.console import quiet_libraries
    from ablate.training import launch

    quiet_libraries()
    experiment = a.experiment or cfg.tracking.experiment or "ablate-train"
    result = launch.run(cfg, experiment=experiment,
                        tracking_uri=a.tracking_uri or cfg.tracking.tracking_uri)
    if not result.run_id:  # DDP ranks > 0 have no run of their own
        return 0
    shown = {k: v for k, v in result.metrics.items()
             if k in ("val/loss", "val/ppl", "perf/tokens_per_s")}
    print(f"run {result.run_id}: " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
          + f"  params_active={result.sizes['params_active']:,}")
    return 0
