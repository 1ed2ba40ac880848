"""The `ablate` command line: the parser assembled from one module per command, signals,
and main(). Errors a user can fix: one line on stderr, exit code 2.

A command is a module of this package with `add_parser(sub)` (its subparser) and `run(args)
-> exit code`, listed once in COMMANDS. A command whose subparser has an `overrides`
positional also takes key=value overrides given after its --options.
"""

from __future__ import annotations

import argparse
import os
import sys

from ablate.cli import bench, claims, compare, config, dashboard, doctor, sweep, train, ui
from ablate.cli.common import Parser, apply_env, name_the_source
from ablate.tracking import full_disk  # (its import quiets MLflow's own full-disk traceback)

COMMANDS = {"train": train, "sweep": sweep, "compare": compare, "dashboard": dashboard,
            "claims": claims, "doctor": doctor, "ui": ui, "bench": bench, "config": config}

EPILOG = """\
Overrides are plain OmegaConf dotlists, the same dotted keys as in sweep files and in
MLflow params:   ablate train model.ffn=moe model.moe.n_experts=8 model.moe.top_k=2

Everything is written under ./ablate-runs (set ABLATE_HOME to move it): mlflow.db and
artifacts/ (MLflow), optuna/ (study journals), cache/ (tokenized data).

Start here:
  ablate sweep sweeps/quickstart.yaml     dense vs MoE on the Python stdlib corpus (CPU)
  ablate ui                               open the results in the MLflow UI
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="ablate",
        description="Ablation studies of Mixture-of-Experts language models: train, sweep with "
        "Optuna, compare in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


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
    held) and leave the trial RUNNING. A third one interrupts again (force).

    A stop that lands while a finalizer or a weakref callback runs (garbage collection can
    run one anywhere) is printed and dropped by Python ("Exception ignored in ..."): the
    process would train on as if never signalled. Such a KeyboardInterrupt is delivered
    again through the same handler a moment later, once the finalizer has returned.
    Previous handlers and hooks are restored on exit."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __enter__(self):
        import signal
        import threading

        self.received, self.saved, self.again, self.hook = 0, {}, None, None
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers
        for name in self.SIGNALS:
            sig = getattr(signal, name)
            current = signal.getsignal(sig)
            if current in (signal.SIG_DFL, signal.default_int_handler):  # not if ignored or taken
                self.saved[sig] = current
                signal.signal(sig, self._handle)
        self.hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def _handle(self, signum, frame) -> None:
        if self.again == signum:  # a stop a finalizer dropped, delivered again
            self.again = None
            raise KeyboardInterrupt(f"signal {signum}")
        self.received += 1
        self.signum = signum
        if self.received == 2:  # already stopping: let the cleanup finish
            print("ablate: stopping (closing the runs); signal again to force", file=sys.stderr)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def _unraisable(self, unraisable) -> None:
        import _thread
        import threading

        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.received:
            self.again = self.signum
            # from another thread, a moment later: a handler run from here (still inside
            # the finalizer) would be dropped again
            threading.Timer(0.02, _thread.interrupt_main, (self.signum,)).start()
            return
        self.hook(unraisable)

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.hook is not None:
            sys.unraisablehook = self.hook
        if self.received:  # the stop was handled: the exit code is ours
            _forget_unhandled_interrupt()


def _forget_unhandled_interrupt() -> None:
    """CPython marks a KeyboardInterrupt that left Python source run from C (the PyRun_*
    API) as unhandled, even when Python code caught it later, and ends a `python -m`
    process by SIGINT at exit (status -2 instead of the command's own code). Running any
    source through the same C path clears the mark."""
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"")
    except (ImportError, AttributeError):  # not CPython: no such mark
        pass


def main(argv: list[str] | None = None) -> int:
    from ablate.errors import AblateError

    _environment()
    parser = build_parser()
    a, extra = parser.parse_known_args(argv)
    bad = [x for x in extra if "=" not in x or x.startswith("-")]
    if bad or (extra and not hasattr(a, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:  # key=value overrides given after --options
        a.overrides += extra
    if a.command is None:
        parser.print_help()
        return 0
    apply_env(a)
    try:
        with _GracefulSignals():
            return COMMANDS[a.command].run(a)
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
