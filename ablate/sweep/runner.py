"""`ablate sweep`: one Optuna study, one MLflow parent run, one child run per trial.

Re-running the same command resumes: the study is loaded from its storage, finished
trials count against `n_trials` and are not trained again, and new trials keep numbering.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import socket
import sys
import time
import warnings
from typing import Any

import optuna
import yaml
from omegaconf import OmegaConf
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ablate import paths
from ablate.config.load import load_config
from ablate.console import quiet_libraries
from ablate.errors import ConfigError
from ablate.sweep import ddp
from ablate.sweep import space as sp
from ablate.sweep.spec import SweepSpec
from ablate.sweep.study import make_pruner, make_sampler, make_storage
from ablate.tracking import runs, store

SUMMARY_METRICS = ("val/loss", "val/ppl", "train/loss", "train/lm_loss", "perf/tokens_per_s",
                   "perf/step_ms", "params_active", "params_total", "flops_per_token")
FINISHED = ("COMPLETE", "PRUNED")


def _check_metric(metric: str, key: str) -> None:
    if metric not in SUMMARY_METRICS and not metric.startswith(("val/", "train/", "moe/", "perf/")):
        raise ConfigError(key, metric, ", ".join(SUMMARY_METRICS) + ", or a val/ train/ moe/ perf/ metric")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not waited for yet is a zombie: dead
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


MAX_RETRIES = 3
MAX_CONSECUTIVE_FAILURES = 3


def original_trial_number(trial) -> int:
    """The first attempt's number: it keys the checkpoint directory across retries."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import FrozenTrial

    if "retry_of" in trial.user_attrs:
        return int(trial.user_attrs["retry_of"])
    frozen = trial if isinstance(trial, FrozenTrial) else trial.study._storage.get_trial(trial._trial_id)
    with warnings.catch_warnings():  # "experimental" since optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)  # RDB heartbeat retries
    return trial.number if rdb is None else rdb


def reap_dead_trials(study, client) -> list[int]:
    """RUNNING trials whose worker process on this host is gone (SIGKILL, power loss) become
    FAIL in Optuna and FAILED in MLflow, and are queued again (same params, up to
    MAX_RETRIES) to resume from their last checkpoint. Other hosts' trials are left to RDB
    heartbeats."""
    from optuna.trial import TrialState

    host, reaped = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") != host or "pid" not in t.user_attrs:
            continue  # another host's, or its worker is still starting it
        if _alive(t.user_attrs.get("pid")):
            continue
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "worker process died")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id:
            client.set_tag(run_id, "ablate.state", "FAILED")
            client.set_tag(run_id, "ablate.fail_reason", "worker process died")
            client.set_terminated(run_id, status="FAILED")
        requeue(study, t)
        reaped.append(t.number)
    return reaped


def requeue(study, trial) -> None:
    """Queue a copy of an unfinished trial (same params; up to MAX_RETRIES): it resumes from
    the checkpoint directory keyed by the first attempt's number."""
    attempt = int(trial.user_attrs.get("attempt", 1))
    if attempt <= MAX_RETRIES:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": original_trial_number(trial),
                                                      "attempt": attempt + 1})


class Sweep:
    """Validated, ready-to-run sweep: nothing is created until `run()`."""

    def __init__(self, spec: SweepSpec, overrides: list[str] = (), storage: str | None = None,
                 tracking_uri: str | None = None, n_trials: int | None = None,
                 timeout: float | None = None, worker: int = 0, workers: int = 1):
        self.spec, self.overrides = spec, list(overrides)
        self.storage_url, self.worker, self.workers = storage, worker, workers
        self.tracking_uri = store.resolve_tracking_uri(tracking_uri)
        self.n_trials = n_trials or spec.n_trials
        self.timeout = timeout or spec.timeout
        self.params, self.arms = sp.parse_space(spec.space)
        self.last_failure = ""
        for i, obj in enumerate(spec.objectives):
            _check_metric(obj.metric, "objective.metric" if len(spec.objectives) == 1 else f"objectives[{i}].metric")
        self.base_cfg = load_config(base=spec.base, overrides=self.overrides)  # validates the base
        for point in sp.corner_points(self.params, self.arms):  # every reachable option, up front
            self.config_for(point)
        store.check_reachable(tracking_uri)

    def config_for(self, values: dict[str, Any]):
        flat = sp.overrides_for(values, self.arms)
        base = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(self.spec.base),
                                                      OmegaConf.create(sp.nest(flat))))
        return load_config(base=base, overrides=self.overrides)

    @property
    def experiment(self) -> str:
        return self.spec.experiment or self.spec.study

    # -- study and parent run -------------------------------------------------------------
    def open_study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = make_storage(self.storage_url, self.spec.study, self.workers)
        try:
            return optuna.create_study(
                study_name=self.spec.study, storage=storage, load_if_exists=True,
                directions=self.spec.directions,
                sampler=make_sampler(self.spec.sampler, len(self.spec.objectives), self.worker),
                pruner=make_pruner(self.spec.pruner),
            )
        except ValueError as e:  # e.g. directions differ from the stored study
            raise ConfigError("objective.direction", self.spec.directions,
                              "the directions the stored study was created with", str(e)) from None

    def parent_run(self, study, client) -> str:
        exp_id = store.ensure_experiment(client, self.experiment)
        parent = study.user_attrs.get("mlflow_parent_run_id")
        if parent:
            try:
                if client.get_run(parent).info.lifecycle_stage == "active":
                    client.update_run(parent, status="RUNNING")
                    return parent
            except Exception:  # noqa: BLE001 - deleted from the store: make a new one
                pass
        tags = runs.standard_tags(**{"ablate.study": self.spec.study, "ablate.kind": "study"})
        parent = runs.create_run(client, exp_id, self.spec.study, tags)
        runs.log_params(client, parent, {
            "study": self.spec.study, "sampler": self.spec.sampler["name"],
            "pruner": self.spec.pruner["name"], "n_trials": self.n_trials,
            "objectives": ",".join(f"{o.metric}:{o.direction}" for o in self.spec.objectives),
        })
        client.log_text(parent, store.mask(yaml.safe_dump(self.spec.source, sort_keys=False)), "sweep.yaml")
        study.set_user_attr("mlflow_parent_run_id", parent)
        return parent

    # -- the objective --------------------------------------------------------------------
    def objective(self, trial, parent: str, progress=None):
        import optuna

        from ablate.tracking.naming import arm_name
        from ablate.training.run import train

        lock = getattr(self, "_ask_lock", None)
        while lock is not None and lock.is_locked:  # the trial exists: let other workers ask
            lock.release()

        trial.set_user_attr("pid", os.getpid())  # pid before host: the reaper needs both
        trial.set_user_attr("host", socket.gethostname())
        values = sp.suggest(trial, self.params)
        cfg = self.config_for(values)
        if progress is None:
            cfg.trainer.progress = False  # worker processes log lines, not live bars
        name = f"t{trial.number:03d}-{values.get('arm') or arm_name(cfg)}"
        trial.set_user_attr("run_name", name)
        task = None
        if progress is not None:
            task = progress.add_task(f"  trial {trial.number} {values.get('arm', '')}",
                                     total=cfg.trainer.max_steps, info="")
        prune = None if self.spec.multi_objective or self.spec.pruner["name"] == "none" else trial
        original = original_trial_number(trial)
        repeats = self.spec.repeats
        per_repeat: list[dict[str, float]] = []
        run_ids: list[str] = []

        def on_run(run_id: str) -> None:
            run_ids.append(run_id)
            trial.set_user_attr("mlflow_run_ids", list(run_ids))
            trial.set_user_attr("mlflow_run_id", run_ids[0])

        try:
            for r in range(repeats):  # same seeds in every arm: paired comparisons
                cfg_r = copy.deepcopy(cfg)
                cfg_r.trainer.seed = cfg.trainer.seed + r
                ckpt = paths.checkpoint_dir(self.spec.study, f"trial-{original:05d}", f"seed-{cfg_r.trainer.seed}")
                if task is not None:
                    progress.reset(task, total=cfg.trainer.max_steps)
                if ddp.active():  # DDP peers train the same run
                    ddp.share({"values": values, "seed": cfg_r.trainer.seed, "ckpt": str(ckpt),
                               "prune": prune is not None and r == 0})
                result = train(cfg_r, experiment=self.experiment, tracking_uri=self.tracking_uri,
                               run_name=name if repeats == 1 else f"{name}-r{r}", parent_run_id=parent,
                               tags={"ablate.study": self.spec.study, "ablate.trial": str(trial.number),
                                     "ablate.repeat": str(r)},
                               trial=prune if r == 0 else None,  # prune on the first seed's curve
                               progress=(progress, task) if task is not None else None,
                               on_run=on_run, ckpt_dir=ckpt)
                per_repeat.append({**{k: float(v) for k, v in result.sizes.items()}, **result.metrics})
                if result.pruned:
                    break
        except Exception as e:
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
            raise
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: the next run resumes it from its checkpoint
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C or SIGTERM)")
            requeue(trial.study, trial)
            raise
        finally:
            if task is not None:
                progress.remove_task(task)
        metrics = {k: sum(m[k] for m in per_repeat) / len(per_repeat)
                   for k in per_repeat[0] if all(k in m for m in per_repeat)}
        trial.set_user_attr("metrics", {k: metrics[k] for k in SUMMARY_METRICS if k in metrics})
        if repeats > 1:
            trial.set_user_attr("metrics_per_repeat", [
                {k: m[k] for k in SUMMARY_METRICS if k in m} for m in per_repeat])
        if result.pruned:
            raise optuna.TrialPruned(f"pruned at step {result.extra.get('pruned_at')}")
        out = []
        for obj in self.spec.objectives:
            v = metrics.get(obj.metric)
            if v is None or not math.isfinite(v):
                raise RuntimeError(f"objective {obj.metric} is {v}: not logged or not finite")
            out.append(v)
        return out[0] if len(out) == 1 else out

    # -- budget and the trial loop -------------------------------------------------------
    def budget_left(self, study) -> int:
        """Trials still to start: finished and running ones (any worker) count."""
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        taken = sum(s in FINISHED or s == "RUNNING" for s in states)
        left = self.n_trials - taken
        grid = sp.grid_size(self.params)
        if self.spec.sampler["name"] in ("bruteforce", "grid") and grid is not None:
            left = min(left, grid - taken)  # an exhaustive grid ends there
        return left

    def prepare(self):
        """Open (or resume) the study and its parent run; fail trials of dead local workers."""
        study = self.open_study()  # a bad storage fails here, before anything is written:
        quiet_libraries()  # importing lightning builds matplotlib's font cache in ABLATE_HOME
        client = store.client(self.tracking_uri)
        parent = self.parent_run(study, client)
        reap_dead_trials(study, client)
        return study, client, parent

    def trial_loop(self, study, client, parent: str, progress=None, callbacks=()) -> None:
        """Start one trial at a time while budget is left. The check and Optuna's creation of
        the trial happen under a per-study file lock (released as the objective starts), so
        workers on one machine never overshoot `n_trials`."""
        from filelock import FileLock

        lock = FileLock(str(paths.home() / "optuna" / f"{self.spec.study}.ask.lock"))
        deadline = time.monotonic() + self.timeout if self.timeout else None
        failures = 0
        while deadline is None or time.monotonic() < deadline:
            if failures >= MAX_CONSECUTIVE_FAILURES:  # a broken setup: stop, don't spin
                print(f"ablate: {failures} trials in a row failed; stopping this worker "
                      f"(last: {self.last_failure})", file=sys.stderr, flush=True)
                break
            reap_dead_trials(study, client)
            lock.acquire()
            try:
                if self.budget_left(study) <= 0:
                    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if not running:
                        break
                    lock.release()  # others still train: stay to retry them if their worker dies
                    time.sleep(2.0)
                    continue
                self._ask_lock = lock
                n_fail = self._n_failed(study)
                study.optimize(lambda t: self.objective(t, parent, progress), n_trials=1,
                               catch=(Exception,), gc_after_trial=True, callbacks=list(callbacks))
                failures = failures + 1 if self._n_failed(study) > n_fail else 0
            finally:
                self._ask_lock = None
                while lock.is_locked:
                    lock.release()
        if ddp.active():
            ddp.share(None)  # DDP peers: no more trials

    def status_line(self, study) -> str:
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        best = ""
        if not self.spec.multi_objective and counts.get("COMPLETE"):
            best = f"  best {study.best_value:.4f} (trial {study.best_trial.number})"
        return (f"done {counts.get('COMPLETE', 0)} pruned {counts.get('PRUNED', 0)} "
                f"failed {counts.get('FAIL', 0)} running {counts.get('RUNNING', 0)}{best}")

    def _progress(self, console):
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console)

    # -- entry points ---------------------------------------------------------------------
    def run(self, console: Console | None = None):
        """One process: trials in turn, with a progress bar for the study and the trial."""
        console = console or Console(stderr=True)
        study, client, parent = self.prepare()
        left = self.budget_left(study)
        if left <= 0:
            console.print(f"study [bold]{self.spec.study}[/]: nothing left to train "
                          f"(budget {self.n_trials}; raise --n-trials to add trials)")
            client.set_terminated(parent, status="FINISHED")
            return study
        progress = self._progress(console)
        task = progress.add_task(f"[bold]{self.spec.study}[/] trials", total=left, info="")

        def on_trial(study, trial) -> None:
            progress.update(task, advance=1, info=self.status_line(study))

        with self._parent_open(study, client, parent), progress:
            self.trial_loop(study, client, parent, progress, [on_trial])
        return study

    @contextlib.contextmanager
    def _parent_open(self, study, client, parent: str):
        """The parent run stays RUNNING while trials run; then the summary, then its end."""
        status = "FINISHED"
        try:
            yield
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._summarise(study, client, parent)
            client.set_terminated(parent, status=status)

    def run_worker(self) -> None:
        """A worker process of `--workers N`: the parent made the study and its parent run."""
        quiet_libraries()
        study = self.open_study()
        client = store.client(self.tracking_uri)
        parent = study.user_attrs["mlflow_parent_run_id"]

        def log_line(study, trial) -> None:
            print(f"worker {self.worker}: trial {trial.number} {trial.state.name}", flush=True)

        self.trial_loop(study, client, parent, None, [log_line])

    def run_parallel(self, worker_argv, env_for, console: Console | None = None):
        """Spawn workers (`worker_argv(i)`, `env_for(i)`), show the study's progress, wait."""
        from ablate.cli_stores import store_env
        from ablate.sweep.workers import run_workers
        from ablate.tracking.server import local_server

        console = console or Console(stderr=True)
        study, client, parent = self.prepare()
        left = self.budget_left(study)
        with contextlib.ExitStack() as stack:
            uri = self.tracking_uri
            if uri.startswith("sqlite"):  # one writer process for N workers
                uri = stack.enter_context(local_server(uri))
            progress = self._progress(console)
            task = progress.add_task(f"[bold]{self.spec.study}[/] trials", total=max(left, 0), info="")
            done0 = self._finished(study)

            def tick() -> None:
                progress.update(task, completed=self._finished(study) - done0,
                                info=self.status_line(study))

            with self._parent_open(study, client, parent), progress:
                # the stores reach the workers by environment: no password on a command line
                stores = store_env(self.storage_url, uri)
                rc = run_workers(worker_argv, lambda i: {**env_for(i), **stores}, self.workers,
                                 tick, paths.home() / "logs" / self.spec.study)
        if rc:
            console.print(f"[yellow]a worker exited with code {rc}; see {paths.home() / 'logs'}[/]")
        return study

    def _n_failed(self, study) -> int:
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if failed:
            self.last_failure = failed[-1].user_attrs.get("fail_reason", "unknown")
        return len(failed)

    @staticmethod
    def _finished(study) -> int:
        return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))

    def _summarise(self, study, client, parent: str) -> None:
        rows = []
        for t in study.get_trials(deepcopy=False):
            rows.append({"trial": t.number, "state": t.state.name, "params": t.params,
                         "values": t.values, "metrics": t.user_attrs.get("metrics", {}),
                         "run_id": t.user_attrs.get("mlflow_run_id"),
                         "fail_reason": t.user_attrs.get("fail_reason")})
        client.log_dict(parent, {"study": self.spec.study, "trials": rows}, "summary.json")
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if done and not self.spec.multi_objective:
            client.log_metric(parent, f"best/{self.spec.objectives[0].metric}", study.best_value)
        client.log_metric(parent, "trials/complete", len(done))
