"""`ablate train`: one run from a config file and overrides, logged as one MLflow run."""

from __future__ import annotations

import contextlib

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
    tracking_uri = a.tracking_uri or cfg.tracking.tracking_uri
    with _progress(cfg) as display:  # off a terminal: plain lines, as a sweep's
        result = launch.run(cfg, experiment=experiment, tracking_uri=tracking_uri,
                            progress=display)
    if not result.run_id:  # DDP ranks > 0 have no run of their own
        return 0
    shown = {k: v for k, v in result.metrics.items()
             if k in ("val/loss", "val/ppl", "perf/tokens_per_s")}
    print(f"run {result.run_id}: " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
          + f"  params_active={result.sizes['params_active']:,}")
    if "profile" in result.extra:
        from ablate.training.profile import render

        print(render(result.extra["profile"]))
    print(_where(result.run_id, experiment, tracking_uri), flush=True)
    return 0


@contextlib.contextmanager
def _progress(cfg):
    """Lightning's bar on a terminal (None: the run shows its own); plain, flushed lines of
    the sweep display off one (a log file, `| cat`, a batch job), never a stray bar."""
    import sys

    if sys.stderr.isatty() or not cfg.trainer.progress:
        yield None
        return
    from rich.console import Console

    from ablate.cli.progress import SweepDisplay
    from ablate.tracking.naming import arm_name

    with SweepDisplay(Console(stderr=True), "train", plain=True) as display:
        display.start(None, {"arm": arm_name(cfg)}, cfg.trainer.max_steps, 0, 1)
        yield display


def _where(run_id: str, experiment: str, tracking_uri: str | None) -> str:
    """Where the run went: its experiment and store, and the link `ablate ui` serves."""
    from ablate.tracking import store

    uri = store.resolve_tracking_uri(tracking_uri)
    try:
        exp = store.client(uri).get_run(run_id).info.experiment_id
        link = f"{store.UI}/#/experiments/{exp}/runs/{run_id}"
    except Exception:  # noqa: BLE001 - a courtesy line, never a failure
        link = "(the run's page)"
    return f"MLflow: experiment {experiment} in {store.mask(uri)}; `ablate ui`, then {link}"
