"""Worker processes for `ablate sweep --workers N`: devices, CPU threads, lifecycle.

Each worker is a full `ablate sweep` process in worker mode that joins the same study
through its storage (Optuna's model: workers coordinate only through the storage). The
parent hands each worker its GPUs (CUDA_VISIBLE_DEVICES) or its share of the CPU cores,
forwards Ctrl-C / SIGTERM, and polls the study for the progress bar.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from ablate.errors import ConfigError
from ablate.tracking.server import die_with_parent

# the stores reach child `ablate` processes by environment: never a password on a command line
STORAGE_ENV = "ABLATE_STORAGE"
TRACKING_ENV = "ABLATE_TRACKING_URI"
PARENT_ENV = "ABLATE_PARENT_PID"  # a worker's sweep: it knows when that one died


def parent_died(wait: float = 1.0) -> bool:
    """In a worker of `--workers N`: the sweep that started it is gone (the worker was handed
    to init or a subreaper). The death signal comes when the *thread* that started the worker
    ends; while the rest of a killed sweep is still being torn down the worker is handed to a
    sibling thread (same pid), so a signal that finds the parent alive waits up to `wait`
    seconds for the hand-over before it is read as a plain Ctrl-C / SIGTERM."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return False
    deadline = time.monotonic() + wait
    while os.getppid() == int(parent):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def store_env(storage: str | None, tracking_uri: str | None) -> dict[str, str]:
    """The environment that hands both URIs to a child `ablate` process."""
    return {TRACKING_ENV: tracking_uri or "", STORAGE_ENV: storage or ""}


def parse_gpus(gpus: str | None) -> list[str]:
    if not gpus:
        return []
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if not all(g.isdigit() for g in ids) or len(set(ids)) != len(ids):
        raise ConfigError("--gpus", gpus, "distinct GPU indices separated by commas, e.g. 0,1,2,3")
    return ids


def plan_devices(n_workers: int | None, gpus: list[str],
                 per_trial: int) -> tuple[int, list[dict[str, str]]]:
    """-> (workers, env per worker). GPUs are split into disjoint groups of `per_trial`;
    without GPUs the CPU cores are split evenly (torch threads = cores // workers)."""
    if per_trial < 1:
        raise ConfigError("--gpus-per-trial", per_trial, "an integer >= 1")
    if gpus:
        groups = len(gpus) // per_trial
        if groups < 1:
            raise ConfigError("--gpus-per-trial", per_trial,
                              f"at most {len(gpus)} (the GPUs given)")
        n = n_workers or groups
        if n > groups:
            raise ConfigError("--workers", n, f"at most {groups} with {len(gpus)} GPUs and "
                              f"{per_trial} per trial")
        return n, [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * per_trial:(i + 1) * per_trial])}
                   for i in range(n)]
    n = n_workers or 1
    threads = str(max(1, (os.cpu_count() or 1) // n))
    return n, [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""}
               for _ in range(n)]


def run_workers(worker_argv: Callable[[int], list[str]], env_for: Callable[[int], dict[str, str]],
                n: int, tick: Callable[[], None], log_dir: Path) -> int:
    """Start n workers, call `tick` every second until all exit; -> the worst exit code."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        env = {**os.environ, **env_for(i), "ABLATE_WORKER": str(i),
               PARENT_ENV: str(os.getpid())}
        # MLflow would log into that run instead of a new child run (and end it)
        env.pop("MLFLOW_RUN_ID", None)
        log = open(log_dir / f"worker-{i}.log", "ab")
        # a worker whose parent dies (even by SIGKILL) gets SIGTERM: it ends its trial FAIL
        # ("parent died", queued again) and exits, instead of training on as an orphan
        procs.append((subprocess.Popen(worker_argv(i), env=env, stdout=log,
                                       stderr=subprocess.STDOUT, preexec_fn=die_with_parent),
                      log))
    try:
        while any([p.poll() is None for p, _ in procs]):  # poll every one: reaps zombies
            tick()
            time.sleep(1.0)
        tick()
    except KeyboardInterrupt:
        for p, _ in procs:  # workers end their trial as FAIL/KILLED, then exit
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    finally:
        for _, log in procs:
            log.close()
    return max((abs(p.returncode or 0) for p, _ in procs), default=0)
