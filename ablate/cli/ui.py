"""`ablate ui`: the MLflow UI on 127.0.0.1 for the default store, with a link to each
study's runs view (MLflow 3 alone opens an experiment on its GenAI pages)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from ablate.cli.common import add_store_args


def add_parser(sub) -> None:
    u = sub.add_parser("ui", help="MLflow UI for the default store, on 127.0.0.1")
    u.add_argument("--host", default="127.0.0.1",
                   help="bind address (default 127.0.0.1: local only)")
    u.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    u.add_argument("--verbose", action="store_true",
                   help="show the server's deprecation warnings (hidden by default)")
    add_store_args(u, storage=None)


def command(uri: str, host: str, port: int) -> list[str]:
    """The `mlflow server` command line of the UI (artifacts under ABLATE_HOME for SQLite)."""
    from ablate import paths

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", host, "--port", str(port)]
    if uri.startswith("sqlite:///"):
        cmd += ["--default-artifact-root", paths.artifact_root().as_uri()]
    return cmd


def run(a) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop the server and its workers (they run in a
    session of their own: a signal to this process alone must not leave them holding the
    port). The links are printed once the server answers; its output goes to a log file
    unless --verbose.

    A signal only sets a flag that the waits check: a KeyboardInterrupt thrown into the
    link listing's imports (MLflow's, a second or more) could leave one half done or, from
    Python source run by C code, end the process by SIGINT however it was caught."""
    import threading

    stop = threading.Event()
    with _signals_set(stop):
        return _serve(a, stop)


@contextlib.contextmanager
def _signals_set(stop):
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, lambda *_: stop.set())
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _serve(a, stop) -> int:
    import subprocess

    from ablate import paths
    from ablate.tracking.server import die_with_parent, wait_until_up
    from ablate.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(a.tracking_uri)
    paths.home().mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runner
    log = paths.home() / "mlflow-ui.log"
    if not a.verbose:  # the server's dependencies' deprecations are not the user's to fix
        env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    with open(log, "ab") if not a.verbose else contextlib.nullcontext() as out:
        proc = subprocess.Popen(command(uri, a.host, a.port), env=env, stdout=out,
                                stderr=subprocess.STDOUT if out else None,
                                start_new_session=True, preexec_fn=die_with_parent)
    base = f"http://{'127.0.0.1' if a.host in ('0.0.0.0', '::') else a.host}:{a.port}"
    try:
        wait_until_up(base, proc, log if not a.verbose else None, stop=stop)
        if not stop.is_set():
            print(f"MLflow UI on http://{a.host}:{a.port}  (store {uri}; Ctrl-C to stop"
                  + (f"; server log {log})" if not a.verbose else ")"), flush=True)
            for name, link in study_links(uri, base):
                print(f"  {name}: {link}", flush=True)
        while not stop.wait(0.5):
            if proc.poll() is not None:
                return proc.returncode
        print("MLflow UI stopped", flush=True)
        return 0
    finally:
        _stop(proc)


def _stop(proc) -> None:
    """SIGTERM to the server's whole session (its workers too), SIGKILL if it lingers."""
    import signal
    import subprocess

    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


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
