"""The `ablate` command line. Errors a user can fix: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import atexit
import os
import sys

from ablate import cli_claims, cli_config, cli_doctor, cli_report
from ablate.cli_stores import add_store_args, apply_env, name_the_source
from ablate.tracking import full_disk  # (its import quiets MLflow's own full-disk traceback)

EPILOG = """\
Overrides are plain OmegaConf dotlists, the same dotted keys as in sweep files and in
MLflow params:   ablate train model.ffn=moe model.moe.n_experts=8 model.moe.top_k=2

Everything is written under ./ablate-runs (set ABLATE_HOME to move it): mlflow.db and
artifacts/ (MLflow), optuna/ (study journals), cache/ (tokenized data).

Start here:
  ablate sweep sweeps/quickstart.yaml     dense vs MoE on the Python stdlib corpus (CPU)
  ablate ui                               open the results in the MLflow UI
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the contract of every ablate error)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ablate",
        description="Ablation studies of Mixture-of-Experts language models: train, sweep with "
        "Optuna, compare in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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

    s = sub.add_parser("sweep", help="run (or resume) an Optuna study from a sweep file",
                       description="Run an Optuna study defined in SWEEP.yaml: one MLflow parent "
                       "run, one child run per trial. Re-running the same command resumes it.")
    s.add_argument("sweep", metavar="SWEEP.yaml", help="the sweep file (docs/sweep-files.md)")
    s.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every trial")
    s.add_argument("--study", help="study name (default: the file's `study:`)")
    s.add_argument("--n-trials", type=int, help="total trial budget of the study")
    s.add_argument("--timeout", type=float, help="stop starting new trials after S seconds")
    add_store_args(s, storage="Optuna storage (default: $ABLATE_HOME/optuna/<study>.journal)")
    s.add_argument("--workers", type=int, help="worker processes on this machine (default 1, "
                   "or one per GPU group)")
    s.add_argument("--gpus", help="GPU indices to use, e.g. 0,1,2,3")
    s.add_argument("--gpus-per-trial", type=int, default=1, help="GPUs per worker (DDP inside a trial)")
    s.add_argument("--plugin", action="append", default=[], help="import a module that registers "
                   "routers/losses (repeatable)")
    s.add_argument("--extend", action="store_true", help="the sweep file or overrides changed "
                   "what the stored study measures: record it as the study's next revision "
                   "(ablate compare keeps revisions apart) instead of refusing")
    s.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the parent

    u = sub.add_parser("ui", help="MLflow UI for the default store, on 127.0.0.1")
    u.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    u.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    add_store_args(u, storage=None)

    b = sub.add_parser("bench", help="benchmarks (`ablate bench moe`)")
    b.add_argument("what", choices=["moe"], help="what to time: moe (the MoE layer vs its "
                   "dense equivalent)")
    b.add_argument("rest", nargs=argparse.REMAINDER, metavar="...",
                   help="the benchmark's own options (e.g. `ablate bench moe --help`)")
    cli_report.add_parsers(sub)
    cli_doctor.add_parsers(sub)
    cli_claims.add_parsers(sub)
    cli_config.add_parsers(sub)
    return p


def _split_config(args: list[str]) -> tuple[str | None, list[str]]:
    if args and "=" not in args[0] and args[0].endswith((".yaml", ".yml")):
        return args[0], args[1:]
    return None, args


def _hub_mode(source: str) -> None:
    """Offline unless the config names a hub dataset; read by `datasets` at import time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "0" if source == "hub" else "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _train(a) -> int:
    from ablate.config.load import load_config
    from ablate.training.preflight import check_environment
    from ablate.registry import load_plugins

    load_plugins(a.plugin)
    path, overrides = _split_config(a.args)
    cfg = load_config(path, overrides)
    check_environment(cfg, a.tracking_uri)  # home, store URL, data, devices: nothing exists yet
    from ablate.tracking.store import check_reachable

    check_reachable(a.tracking_uri or cfg.tracking.tracking_uri)
    _hub_mode(cfg.data.source)
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


def _sweep(a) -> int:
    from ablate.errors import ConfigError
    from ablate.registry import load_plugins
    from ablate.sweep.runner import Sweep
    from ablate.sweep.spec import check_study_name, load_sweep
    from ablate.sweep.workers import parse_gpus, plan_devices

    load_plugins(a.plugin)
    if a.n_trials is not None and a.n_trials < 1:
        raise ConfigError("--n-trials", a.n_trials, "an integer >= 1")
    spec = load_sweep(a.sweep, study=check_study_name(a.study, "--study") if a.study else None)
    if a.workers is not None and a.workers < 1:
        raise ConfigError("--workers", a.workers, "an integer >= 1")
    n, envs = plan_devices(a.workers, parse_gpus(a.gpus), a.gpus_per_trial)
    if a.gpus:  # the trials use the GPUs they were handed
        a.overrides += ["trainer.accelerator=gpu", f"trainer.devices={a.gpus_per_trial}"]
    sweep = Sweep(spec, a.overrides, storage=a.storage, tracking_uri=a.tracking_uri,
                  n_trials=a.n_trials, timeout=a.timeout, worker=a.worker_index or 0, workers=n,
                  extend=a.extend)
    _hub_mode(sweep.base_cfg.data.source)
    from ablate.sweep import ddp

    if ddp.launched_distributed():  # torchrun / srun: DDP inside each trial
        atexit.register(ddp.finish)
        if ddp.init(sweep.base_cfg.trainer.accelerator) != 0:
            ddp.follow(sweep)
            return 0
    if a.worker_index is not None:
        sweep.run_worker()
        return 0
    return _run_sweep(a, sweep, n, envs)


def _run_sweep(a, sweep, n: int, envs: list[dict[str, str]]) -> int:
    """This process trains (one worker) or watches N workers; then the table and the verdict:
    exit 0 only when every point of the budget is done."""
    from rich.console import Console

    from ablate.cli_progress import SweepDisplay
    from ablate.reporting.table import trials_table

    console, spec = Console(), sweep.spec
    rc = 0
    with SweepDisplay(Console(stderr=True), spec.study) as display:
        if n > 1 or a.gpus_per_trial > 1:
            state = {}

            def tick(study) -> None:
                if not state:
                    state.update(total=sweep.n_trials, done0=sum(
                        t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False)))
                display.tick(study, **state)

            study, revision, rc = sweep.run_parallel(lambda i: _worker_argv(a, sweep, n, i),
                                                     lambda i: envs[i], tick)
        else:
            study, revision = sweep.run(display.events, display)
    if rc:
        console.print(f"[yellow]a worker exited with code {rc}; see {_logs(spec.study)}[/]")
    console.print(trials_table(study, [o.metric for o in spec.objectives]))
    _verdicts(console, spec.study, sweep.storage_url, sweep.tracking_uri)
    _next_commands(console, sweep, study)
    report = sweep.report(study, revision)
    if report.ok:
        console.print(report.last_line(spec.study))
        return 0
    print(f"ablate: {report.last_line(spec.study)}", file=sys.stderr, flush=True)
    return 1


def _next_commands(console, sweep, study) -> None:
    """Where to look next: the table, the plots, the MLflow UI (a link to the study's runs)."""
    from pathlib import Path

    from ablate.tracking import store

    name = sweep.spec.study
    dashboard = Path("dashboards") / f"{name}.yaml"
    dashboard = dashboard if dashboard.is_file() else Path("dashboards") / "moe_overview.yaml"
    parent = study.user_attrs.get("mlflow_parent_run_id")
    link = ""
    try:
        exp = store.client(sweep.tracking_uri).get_run(parent).info.experiment_id if parent else None
        if exp:
            link = f"  (then open {store.ui_url(exp)})"
    except Exception:  # noqa: BLE001 - a link is a courtesy, never a failure
        pass
    storage = f" --storage {store.mask(sweep.storage_url)}" if sweep.storage_url else ""
    console.print("next:\n"
                  f"  ablate compare --study {name}{storage}          arms: mean ± 95% CI, verdicts\n"
                  f"  ablate dashboard {dashboard} --study {name}{storage}   plots, one HTML file\n"
                  f"  ablate ui{link}")


def _verdicts(console, study: str, storage: str | None, tracking_uri: str) -> None:
    """The study's expectations judged on what it measured: printed, and logged to the parent
    run (tags ablate.claim.<i>, claims.json, the run's description)."""
    from ablate.reporting.collect import load_study
    from ablate.reporting.compare import compare, to_markdown
    from ablate.reporting.verdicts import judge_all, log_verdicts, to_rich

    data = load_study(study, storage=storage, tracking_uri=tracking_uri)
    verdicts = judge_all(data)
    if verdicts:
        console.print(to_rich(verdicts, data.metric))
        if data.parent_run_id:
            c = compare(data)
            log_verdicts(data.client, data.parent_run_id, verdicts, data.metric,
                         to_markdown(c) if c.rows else "")


def _logs(study: str):
    from ablate import paths

    return paths.home() / "logs" / study


def _worker_argv(a, sweep, n: int, i: int) -> list[str]:
    launch = [sys.executable, "-m", "ablate"]
    if a.gpus_per_trial > 1:  # each worker is a torchrun group: DDP inside its trials
        from ablate.tracking.server import free_port

        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                  str(a.gpus_per_trial), "--master-port", str(free_port()), "-m", "ablate"]
    argv = [*launch, "sweep", a.sweep, *a.overrides, "--study", sweep.spec.study,
            "--n-trials", str(sweep.n_trials), "--worker-index", str(i), "--workers", str(n)]
    argv += ["--timeout", str(a.timeout)] if a.timeout else []
    argv += ["--extend"] if a.extend else []
    for plugin in a.plugin:
        argv += ["--plugin", plugin]
    return argv


def _ui(a) -> int:
    import subprocess

    from ablate import paths
    from ablate.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(a.tracking_uri)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", a.host, "--port", str(a.port)]
    if uri.startswith("sqlite:///"):
        paths.home().mkdir(parents=True, exist_ok=True)
        cmd += ["--default-artifact-root", paths.artifact_root().as_uri()]
    print(f"MLflow UI on http://{a.host}:{a.port}  (store {uri}; Ctrl-C to stop)", flush=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runner
    return subprocess.call(cmd, env=env)


def _bench(a) -> int:
    from ablate.bench.moe import main as bench_moe

    return bench_moe(a.rest)


def _environment() -> None:
    """Inherited by workers and the local MLflow server: no URL (with credentials) printed by
    MLflow, no telemetry, caches under ABLATE_HOME instead of ~."""
    from ablate import paths

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MPLCONFIGDIR", str(paths.cache_dir() / "matplotlib"))


class _GracefulSignals:
    """SIGTERM behaves like Ctrl-C: the running trial ends FAIL in Optuna and KILLED in MLflow
    (instead of RUNNING forever), finished trials are untouched. The second signal is
    ignored: a terminal's Ctrl-C reaches the workers and their parent, which then also sends
    SIGTERM, and that would interrupt the cleanup halfway (e.g. with the study's journal lock
    held) and leave the trial RUNNING. A third one interrupts again (force). Previous handlers
    are restored on exit."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __enter__(self):
        import signal
        import threading

        self.received, self.saved = 0, {}
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers
        for name in self.SIGNALS:
            sig = getattr(signal, name)
            current = signal.getsignal(sig)
            if current in (signal.SIG_DFL, signal.default_int_handler):  # not if ignored or taken
                self.saved[sig] = current
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received += 1
        if self.received == 2:  # already stopping: let the cleanup finish
            print("ablate: stopping (closing the runs); signal again to force", file=sys.stderr)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    from ablate.errors import AblateError

    _environment()
    parser = _parser()
    a, extra = parser.parse_known_args(argv)
    bad = [x for x in extra if "=" not in x or x.startswith("-")]
    if bad or (extra and a.command not in ("train", "sweep", "claims", "config")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:  # key=value overrides given after --options
        if a.command == "train":
            a.args += extra
        else:
            a.overrides += extra
    if a.command is None:
        parser.print_help()
        return 0
    apply_env(a)
    try:
        commands = {"train": _train, "sweep": _sweep, "ui": _ui, "bench": _bench,
                    **dict.fromkeys(cli_report.COMMANDS, cli_report.run),
                    **dict.fromkeys(cli_doctor.COMMANDS, cli_doctor.run),
                    **dict.fromkeys(cli_claims.COMMANDS, cli_claims.run),
                    **dict.fromkeys(cli_config.COMMANDS, cli_config.run)}
        with _GracefulSignals():
            return commands[a.command](a)
    except AblateError as e:
        from ablate.tracking.store import mask

        print(f"error: {mask(str(name_the_source(e, a)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; re-run the same command to resume",
              file=sys.stderr)
        return 130
    except (Exception, full_disk.StoreFull) as e:  # ENOSPC under the stores: one line, no traceback
        if not full_disk.is_full(e):
            raise
        print(full_disk.line(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
