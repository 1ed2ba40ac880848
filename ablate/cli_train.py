"""`ablate train`: one run from a config file and overrides, logged as one MLflow run.

Wired into `ablate/cli.py` by `add_parsers(sub)` in the parser and `run` as the handler.
Errors a user can fix raise `AblateError`/`ConfigError` (one line, exit 2).
"""

from __future__ import annotations

import atexit
import os

from ablate.cli_stores import add_store_args

COMMANDS = ("train",)


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train one model, logged as one MLflow run",
                       description="Train one model and log it to MLflow. CONFIG.yaml and "
                       "key=value overrides are layered over the defaults.")
    t.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                   help="a config file first (optional), then dotted overrides "
                   "(see `ablate config keys`)")
    t.add_argument("--experiment", help="MLflow experiment (default: ablate-train)")
    add_store_args(t, storage=None)
    t.add_argument("--plugin", action="append", default=[], help="import a module that registers "
                   "routers/losses (repeatable)")


def split_config(args: list[str]) -> tuple[str | None, list[str]]:
    """[CONFIG.yaml] [key=value ...] -> (the config file or None, the overrides)."""
    if args and "=" not in args[0] and args[0].endswith((".yaml", ".yml")):
        return args[0], args[1:]
    return None, args


def hub_mode(source: str) -> None:
    """Offline unless the config names a hub dataset; read by `datasets` at import time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "0" if source == "hub" else "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def run(a) -> int:
    from ablate.config.load import load_config
    from ablate.registry import load_plugins
    from ablate.training.preflight import check_environment

    load_plugins(a.plugin)
    path, overrides = split_config(a.args)
    cfg = load_config(path, overrides)
    check_environment(cfg, a.tracking_uri)  # home, store URL, data, devices: nothing exists yet
    from ablate.tracking.store import check_reachable

    check_reachable(a.tracking_uri or cfg.tracking.tracking_uri)
    hub_mode(cfg.data.source)
    from ablate.sweep import ddp

    if ddp.launched_distributed():  # torchrun: join the group before the model is built (EP)
        atexit.register(ddp.finish)
        ddp.init(cfg.trainer.accelerator)
    from ablate.console import quiet_libraries
    from ablate.training.init_weights import prepare_init
    from ablate.training.run import train

    quiet_libraries()
    experiment = a.experiment or cfg.tracking.experiment or "ablate-train"
    tracking_uri = a.tracking_uri or cfg.tracking.tracking_uri
    initial = prepare_init(cfg, experiment=experiment, tracking_uri=tracking_uri)
    result = train(cfg, experiment=experiment, tracking_uri=tracking_uri, initial=initial)
    if not result.run_id:  # DDP ranks > 0 have no run of their own
        return 0
    shown = {k: v for k, v in result.metrics.items() if k in ("val/loss", "val/ppl", "perf/tokens_per_s")}
    print(f"run {result.run_id}: " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
          + f"  params_active={result.sizes['params_active']:,}")
    return 0
