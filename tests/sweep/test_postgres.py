"""Scale-out stores: Optuna RDB storage on PostgreSQL and an `mlflow server` backed by
PostgreSQL, started by the test; workers report through both. Skipped without PostgreSQL."""

import collections
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import optuna
import pytest
import yaml

from ablate.cli import main
from ablate.sweep.study import make_storage
from ablate.tracking.server import free_port
from tests.proc_helpers import command_lines

PG = os.environ.get("ABLATE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")


def _pg_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        import psycopg2  # noqa: F401
    except (OSError, ImportError):
        return False
    return True


pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not _pg_up(), reason="PostgreSQL is not reachable on "
                                 "127.0.0.1:5432 (or psycopg2 is missing): scale-out test skipped")]


@pytest.fixture
def databases():
    import psycopg2

    names = [f"ablate_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("optuna", "mlflow")]
    conn = psycopg2.connect(f"{PG.replace('+psycopg2', '')}/test")
    conn.autocommit = True
    with conn.cursor() as cur:
        for n in names:
            cur.execute(f"CREATE DATABASE {n}")
    yield [f"{PG}/{n}" for n in names]
    with conn.cursor() as cur:
        for n in names:
            cur.execute(f"DROP DATABASE IF EXISTS {n} WITH (FORCE)")
    conn.close()


@pytest.fixture
def mlflow_server(databases, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", databases[1],
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (
                "mlflow server did not start")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


SECRET = "s3cret-pw"


def _watch_cmdlines(stop: threading.Event, seen: list[str]) -> None:
    """Collect the command lines of this machine's `ablate` worker processes until `stop`."""
    while not stop.wait(0.2):
        seen.extend(cmd for cmd in command_lines() if "--worker-index" in cmd)


def test_workers_on_postgres_and_mlflow_server(databases, mlflow_server, ablate_home, tiny,
                                               tmp_path):
    from mlflow.tracking import MlflowClient

    spec = {"study": "pg", "base": {"model": {"ffn": "moe"}},
            "space": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "sampler": {"name": "tpe", "seed": 0}, "n_trials": 6}
    path = tmp_path / "pg.yaml"
    path.write_text(yaml.safe_dump(spec))
    fast = [o for o in tiny if not o.startswith("trainer.max_steps")] + ["trainer.max_steps=3"]
    # a password (trust auth ignores it) that must not show on any worker's command line
    storage = databases[0].replace("://postgres@", f"://postgres:{SECRET}@")
    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_cmdlines, args=(stop, seen), daemon=True)
    watcher.start()
    try:
        assert main(["sweep", str(path), "--workers", "2", "--storage", storage,
                     "--tracking-uri", mlflow_server, *fast]) == 0
    finally:
        stop.set()
        watcher.join()
    assert seen and not [c for c in seen if SECRET in c]  # workers were seen, none showed it

    study = optuna.load_study(study_name="pg", storage=make_storage(storage, "pg"))
    trials = study.get_trials()
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("pg")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert collections.Counter(r.data.tags["ablate.trial"] for r in children) == {
        str(t.number): 1 for t in trials}
    assert all(r.info.status == "FINISHED" and "val/loss" in r.data.metrics for r in children)
    assert not (ablate_home / "mlflow.db").exists()  # nothing went to the local store
