"""The `ablate` command line. Errors a user can fix: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ablate import cli_claims, cli_config, cli_doctor, cli_report, cli_sweep, cli_train
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
    cli_train.add_parsers(sub)
    cli_sweep.add_parsers(sub)

    u = sub.add_parser("ui", help="MLflow UI for the default store, on 127.0.0.1")
    u.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    u.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    u.add_argument("--verbose", action="store_true",
                   help="show the server's deprecation warnings (hidden by default)")
    add_store_args(u, storage=None)

    b = sub.add_parser("bench", help="benchmarks (`ablate bench moe`, `ablate bench step`)")
    b.add_argument("what", choices=["moe", "step"], help="what to time: moe (the MoE layer vs "
                   "its dense equivalent), step (a training step under ablate's Trainer vs a "
                   "bare PyTorch loop)")
    b.add_argument("rest", nargs=argparse.REMAINDER, metavar="...",
                   help="the benchmark's own options (e.g. `ablate bench moe --help`)")
    cli_report.add_parsers(sub)
    cli_doctor.add_parsers(sub)
    cli_claims.add_parsers(sub)
    cli_config.add_parsers(sub)
    return p


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
    for name, link in study_links(uri, f"http://{a.host}:{a.port}"):
        print(f"  {name}: {link}", flush=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runner
    if not a.verbose:  # the server's dependencies' deprecations are not the user's to fix
        env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return subprocess.call(cmd, env=env)


def study_links(uri: str, base: str) -> list[tuple[str, str]]:
    """(experiment, deep link) for every experiment of the store, the studies' runs view
    first: MLflow 3 alone opens on its GenAI pages."""
    from ablate.tracking import store

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return []
    try:
        exps = store.client(uri).search_experiments()
    except Exception:  # noqa: BLE001 - links are a courtesy; the server reports a bad store
        return []
    tagged = [(f"mlflow.sharedViewState.{store.VIEW}" not in e.tags, e.name, e.experiment_id)
              for e in exps if e.name != "Default"]
    return [(name, store.ui_url(i, base, view=not plain)) for plain, name, i in sorted(tagged)]


def _bench(a) -> int:
    import importlib

    return importlib.import_module(f"ablate.bench.{a.what}").main(a.rest)


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
        commands = {"ui": _ui, "bench": _bench,
                    **dict.fromkeys(cli_train.COMMANDS, cli_train.run),
                    **dict.fromkeys(cli_sweep.COMMANDS, cli_sweep.run),
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
