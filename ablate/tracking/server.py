"""A local `mlflow server` in front of the SQLite store, for many worker processes.

SQLite takes one writer at a time; N workers writing metrics straight into it contend for
the lock. One server process owns the file and the workers talk HTTP to it (the pattern
MLflow documents for teams), on a free loopback port, for the lifetime of the sweep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ablate import paths
from ablate.errors import AblateError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_until_up(url: str, proc, log: Path | None, timeout: float = 120.0,
                  stop=None) -> None:
    """Until `url`/health answers (or the threading.Event `stop` is set); AblateError (one
    line, naming the log) if `proc` exits or the server does not answer within `timeout`
    seconds."""
    deadline = time.monotonic() + timeout
    while stop is None or not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            where = f" (see {log})" if log is not None else ""
            raise AblateError(f"the MLflow server did not start{where}")
        time.sleep(0.5)


@contextlib.contextmanager
def local_server(backend_uri: str, timeout: float = 120.0):
    """Yield `http://127.0.0.1:PORT` serving `backend_uri` (artifacts stay on local disk)."""
    if backend_uri.startswith("sqlite:///"):
        Path(backend_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = paths.home() / "mlflow-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
           "--default-artifact-root", paths.artifact_root().as_uri(), "--no-serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # the server's background job runner (GenAI evaluation jobs) is not used by ablate
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "ab") as out:
        # Its own session: a terminal's Ctrl-C reaches the whole foreground process group,
        # and the workers still need the server to close their runs; it is stopped below,
        # after them (and gets SIGTERM if this process dies first).
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, log, timeout)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
