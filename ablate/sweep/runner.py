"""`ablate sweep`: one Optuna study, one MLflow parent run, one child run per trial.

`Sweep` is checked whole when it is built (`preflight.py`: nothing is created before), then
runs in one of four ways: `run` (this process), `run_worker` (a worker process of
`--workers N`), `run_parallel` (start N workers, watch them) or `follow` (a DDP rank > 0
training what rank 0 shares). The trial loop itself is
`loop.py`, a trial's training `objective.py`, the parent run `parent.py`.

Re-running the same command resumes: the study is loaded from its storage, finished points
count against `n_trials` and are not trained again, and new trials keep numbering. A study
is one experiment (`fingerprint.py`): a re-run that changes what it measures is refused,
unless `extend` records the change as a new revision.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from ablate import paths
from ablate.config.load import load_config
from ablate.console import quiet_libraries
from ablate.errors import ConfigError
from ablate.parallel import world
from ablate.sweep import fingerprint as fp
from ablate.sweep import space as sp
from ablate.sweep.loop import TrialLoop
from ablate.sweep.parent import open_parent, parent_open
from ablate.sweep.points import point_states
from ablate.sweep.preflight import EXHAUSTIVE, check_objective_names, check_overrides, preflight
from ablate.sweep.reaper import close_interrupted_runs, fail_dead_trials
from ablate.sweep.record import EXPECT, parent_run_id
from ablate.sweep.spec import SweepSpec
from ablate.sweep.study import make_pruner, make_sampler, make_storage
from ablate.sweep.tune import TUNE, Stages
from ablate.tracking import store


@dataclass
class SweepReport:
    """How the study's current revision stands when a sweep ends."""

    budget: int
    done: int
    failed: dict[str, str] = field(default_factory=dict)  # point -> reason (for good)
    retrying: int = 0
    missing: int = 0  # points of the budget never started (timeout, a stopped worker)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.retrying and not self.missing

    def last_line(self, study: str) -> str:
        if self.ok:
            return f"study {study}: {self.done} of {self.budget} points done"
        parts = []
        if self.failed:
            reasons: dict[str, int] = {}
            for r in self.failed.values():
                short = re.split(r" \(|: ", r, maxsplit=1)[0][:60]  # the kind, not the detail
                reasons[short] = reasons.get(short, 0) + 1
            why = ", ".join(f"{n} {r}" for r, n in reasons.items())
            parts.append(f"{len(self.failed)} failed for good ({why})")
        if self.retrying:
            parts.append(f"{self.retrying} failed and will be retried by the next run")
        if self.missing:
            parts.append(f"{self.missing} not run")
        return (f"study {study}: {self.done} of {self.budget} points done, " + ", ".join(parts)
                + f"; see `ablate doctor --study {study}`")


class Sweep:
    """Validated, ready-to-run sweep: nothing is created until it runs."""

    def __init__(self, spec: SweepSpec, overrides: list[str] = (), storage: str | None = None,
                 tracking_uri: str | None = None, n_trials: int | None = None,
                 timeout: float | None = None, worker: int = 0, workers: int = 1,
                 extend: bool = False):
        self.spec, self.overrides, self.extend = spec, list(overrides), extend
        self.storage_url, self.worker, self.workers = storage, worker, workers
        self.tracking_uri_flag = tracking_uri  # as given (None: the default store)
        self.tracking_uri = store.resolve_tracking_uri(tracking_uri)
        self.n_trials = n_trials or spec.n_trials
        self.timeout = timeout or spec.timeout
        self.params, self.arms = sp.parse_space(spec.space)
        finite = sp.grid_size(self.params) is not None
        if spec.sampler["name"] == "auto":  # enumerate what can be enumerated, else TPE
            spec.sampler = {**spec.sampler, "name": "bruteforce" if finite else "tpe"}
        self.enumerate = finite and spec.sampler["name"] in EXHAUSTIVE
        # what names the user's own mistake first: an override of a swept key, a metric
        # typo (before the base config, whose unrelated checks would report first)
        check_overrides(self.overrides, self.params, self.arms)
        check_objective_names(spec)
        self.base_cfg = load_config(base=spec.base, overrides=self.overrides)  # validates the base
        self.tuned = tuple(spec.tune.space) if spec.tune is not None else ()
        preflight(self)
        store.check_reachable(tracking_uri)

    def config_for(self, values: dict[str, Any], stage: str | None = None):
        """The resolved config of a trial's `values`; a tuning trial (stage `tune`) trains
        `tune.fraction` of the steps, without budgets."""
        flat = sp.overrides_for(values, self.arms)
        base = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(self.spec.base),
                                                      OmegaConf.create(sp.nest(flat))))
        cfg = load_config(base=base, overrides=self.overrides)
        if stage != TUNE:
            return cfg
        steps = max(1, round(self.spec.tune.fraction * cfg.trainer.max_steps))
        return load_config(base=base, overrides=[*self.overrides, f"trainer.max_steps={steps}",
                                                 "trainer.budgets=[]"])

    def seeds(self, cfg=None, stage: str | None = None) -> list[int]:
        """The seeds a point trains: `repeats` from its trainer.seed (the same in every arm:
        arms compare paired), or the tuning seeds."""
        first = (cfg or self.base_cfg).trainer.seed
        if stage == TUNE:
            return list(self.spec.tune.seeds or [first])
        return [first + r for r in range(self.spec.repeats)]

    def tune_stage(self, study, revision: int):
        """The tuning stage's planner (`tune.Stages`) of this study, or None without one."""
        if self.spec.tune is None:
            return None
        return Stages(self.spec.tune, self.params, study, revision, self.spec.directions[0])

    @property
    def experiment(self) -> str:
        return self.spec.experiment or self.spec.study

    # -- the study ------------------------------------------------------------------------
    def open_study(self):
        """-> (study, storage). A stored study with other directions is refused."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = make_storage(self.storage_url, self.spec.study, self.workers)
        if self.enumerate:  # the loop queues every point itself: the sampler never chooses
            sampler = optuna.samplers.RandomSampler(seed=0)  # (BruteForce would stop the study)
        else:
            sampler = make_sampler(self.spec.sampler, len(self.spec.objectives), self.worker)
        try:
            study = optuna.create_study(
                study_name=self.spec.study, storage=storage, load_if_exists=True,
                directions=self.spec.directions, sampler=sampler,
                pruner=make_pruner(self.spec.pruner),
            )
        except ValueError as e:  # the directions differ from the stored study's
            raise ConfigError("objective.direction", self.spec.directions,
                              "the directions the stored study was created with", str(e)) from None
        stored = [d.name.lower() for d in study.directions]
        if stored != self.spec.directions:  # Optuna loads it anyway; its values would be read
            key = "objective.direction" if len(stored) == 1 else "objectives"  # the wrong way
            raise ConfigError(key, ",".join(self.spec.directions), f"{','.join(stored)} (the "
                              "stored study's), or a new --study NAME", "the direction changed")
        if not self.enumerate and study.trials:  # resumed: a sampler seeded as before would
            # propose the first run's points again; offset the seed by the trials so far
            study.sampler = make_sampler(self.spec.sampler, len(self.spec.objectives),
                                         self.worker + 1000 * len(study.trials))
        return study, storage

    def prepare(self):
        """Open (or resume) the study and its parent run; -> (study, storage, client,
        parent run id, revision). A changed study definition stops here, before the run."""
        study, storage = self.open_study()  # a bad storage fails here, before anything is written:
        revision = fp.check_or_record(study, fp.definition(self.spec, self.base_cfg), self.extend,
                                      self.spec.study)
        study.set_user_attr(EXPECT, [e.as_dict() for e in self.spec.expect])  # the hypothesis
        quiet_libraries()  # importing lightning builds matplotlib's font cache in ABLATE_HOME
        client = store.client(self.tracking_uri)
        parent = open_parent(self, study, client, revision)
        fail_dead_trials(study, client, storage)
        close_interrupted_runs(study, client)
        return study, storage, client, parent, revision

    def _lock(self):
        from filelock import FileLock

        return FileLock(str(paths.home() / "optuna" / f"{self.spec.study}.ask.lock"))

    def report(self, study, revision: int) -> SweepReport:
        """The main stage's points: a tuning value that failed (e.g. diverged) is a result."""
        states = point_states(study, revision, self.tuned, stages=(None,))
        grid = sp.grid_size(self.params)
        budget = min(self.n_trials, grid) if grid is not None else self.n_trials
        return SweepReport(budget, len(states.done), dict(states.failed), len(states.retry),
                           max(0, budget - len(states.taken) - len(states.retry)))

    # -- entry points ---------------------------------------------------------------------
    def run(self, events=None, progress=None):
        """One process: trials in turn. -> (study, revision)."""
        study, storage, client, parent, revision = self.prepare()
        loop = TrialLoop(self, study, storage, client, parent, revision, events, progress)
        if events is not None:
            events("open", left=loop.points_left(), study=study)
        with parent_open(self, study, client, parent, revision):
            try:
                loop.run(self._lock())
            finally:
                if world.active():
                    world.share(None)  # DDP peers: no more trials
        return study, revision

    def run_worker(self) -> None:
        """A worker process of `--workers N`: the parent made the study and its parent run."""
        quiet_libraries()
        study, storage = self.open_study()
        revision = fp.check_or_record(study, fp.definition(self.spec, self.base_cfg), self.extend,
                                      self.spec.study)
        client = store.client(self.tracking_uri)
        parent = parent_run_id(study)

        def log_line(kind, **info) -> None:
            if kind == "end":
                o = info["outcome"]
                print(f"worker {self.worker}: trial {info['trial'].number} {o.state}"
                      + (f" ({o.reason})" if o.reason else ""), flush=True)
            elif kind == "stopping":
                print(f"ablate: {info['failures']} trials in a row failed; stopping this worker "
                      f"(last: {info['last']})", flush=True)

        try:
            TrialLoop(self, study, storage, client, parent, revision, log_line).run(self._lock())
        finally:
            if world.active():
                world.share(None)  # a worker that is a torchrun group: its peers stop too

    def follow(self) -> None:
        """DDP ranks > 0 of a trial (torchrun / srun): train whatever rank 0 shares, until it
        shares None. Rank 0 records every outcome, so a follower never asks Optuna."""
        from ablate.training import launch

        while True:
            msg = world.share()
            if msg is None:
                return
            cfg = self.config_for(msg["values"], msg.get("stage"))
            cfg.trainer.seed, cfg.trainer.progress = msg["seed"], False
            try:
                launch.run(cfg, experiment=self.experiment, tracking_uri=self.tracking_uri,
                           prune_follower=msg["prune"], ckpt_dir=msg["ckpt"])
            except Exception:  # noqa: BLE001 - rank 0 records the trial's failure
                pass

    def run_parallel(self, worker_argv, env_for, tick=None):
        """Spawn workers (`worker_argv(i)`, `env_for(i)`), call `tick(study)` while they run,
        wait; -> (study, revision, the workers' worst exit code)."""
        from ablate.sweep.workers import run_workers, store_env
        from ablate.tracking.server import local_server

        study, storage, client, parent, revision = self.prepare()
        with contextlib.ExitStack() as stack:
            uri = self.tracking_uri
            if uri.startswith("sqlite"):  # one writer process for N workers
                uri = stack.enter_context(local_server(uri))
            with parent_open(self, study, client, parent, revision):
                # the stores reach the workers by environment: no password on a command line
                stores = store_env(self.storage_url, uri)
                rc = run_workers(worker_argv, lambda i: {**env_for(i), **stores}, self.workers,
                                 (lambda: tick(study)) if tick else (lambda: None),
                                 paths.home() / "logs" / self.spec.study)
        return study, revision, rc
