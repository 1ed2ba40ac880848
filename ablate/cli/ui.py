"""`ablate ui`: the MLflow UI on 127.0.0.1 for the default store, with a link to each
study's runs view (MLflow 3 alone opens an experiment on its GenAI pages)."""

from __future__ import annotations

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


def run(a) -> int:
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
