"""The trial loop: Optuna's ask/tell, one point at a time, every point once.

    under the per-study lock:  reap dead workers, plan the next point, ask for it
    outside the lock:          train it (objective.run_trial)
    then:                      tell Optuna how it ended

Points, not attempts. A *point* is one configuration (the trial's params); `n_trials`
counts points of the study's current revision. A point is *done* when a trial of it is
COMPLETE or PRUNED, *failed for good* when its last attempt failed deterministically or
used the last of MAX_ATTEMPTS, *in flight* while a trial of it is RUNNING or queued
(WAITING). A transient failure leaves the point to be queued again (same params, the
seeds already finished carried over), also when a worker died before it could.

Finite spaces are enumerated: the next point is the first of the space (in sweep-file
order) that is neither done, failed for good nor in flight; it is queued and asked, so no
sampler can repeat it or skip it (Optuna's BruteForceSampler counts failed trials as
explored, so it would never propose a failed point again and leave a hole). Other spaces ask the
sampler; a proposal equal to a point the study already has is told FAIL as `duplicate_of`
(bookkeeping, never trained) and asked again.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from typing import Callable

from optuna.trial import TrialState

from ablate.sweep import space as sp
from ablate.sweep.objective import Outcome, run_trial
from ablate.sweep.points import (
    PointStates,
    _rdb_original,
    original_number,
    point_key,
    point_states,
    requeue,
    trial_point,
)
from ablate.sweep.reaper import INTERRUPTED, fail_dead_trials, trial_id
from ablate.sweep.record import TrialRecord, queued, write
from ablate.tracking.full_disk import StoreFull, is_full
from ablate.tracking.tags import POINT, REVISION, STAGE, STUDY, TRIAL

MAX_CONSECUTIVE_FAILURES = 3  # a worker stops rather than spin on a broken setup
MAX_DUPLICATE_ASKS = 50


class TrialLoop:
    """Runs trials of `sweep` in this process until the budget, the space or the time is
    used up. `events(kind, **info)` is told of each start and end (the CLI renders it)."""

    def __init__(self, sweep, study, storage, client, parent: str, revision: int,
                 events: Callable[..., None] | None = None, progress=None):
        self.sweep, self.study, self.storage, self.client = sweep, study, storage, client
        self.parent, self.revision, self.progress = parent, revision, progress
        self.events = events or (lambda kind, **info: None)
        self.params, self.arms = sweep.params, sweep.arms
        self.finite = sp.grid_size(self.params) is not None and sweep.enumerate
        self.distributions = sp.fixed_distributions(self.params)
        self.stages = sweep.tune_stage(study, revision)  # None without `tune:`
        if self.stages is not None:  # the tuned keys are params of the trials too
            import optuna.distributions as d

            self.distributions.update({k: d.CategoricalDistribution(list(v))
                                       for k, v in sweep.spec.tune.space.items()})
        self.last_failure = ""

    # -- budget ---------------------------------------------------------------------------
    def points_left(self, states: PointStates | None = None) -> int:
        states = states or point_states(self.study, self.revision, self.sweep.tuned)
        if self.stages is not None:
            return self.stages.planned(self._budget()) - len(states.taken)
        left = self.sweep.n_trials - len(states.taken)
        grid = sp.grid_size(self.params)
        if grid is not None:
            left = min(left, grid - len(states.taken))
        return left

    def _budget(self) -> list[dict]:
        """The space's points the budget (n_trials) covers, in the sweep file's order."""
        return list(itertools.islice(sp.points(self.params), self.sweep.n_trials))

    # -- one step of the loop, under the lock ---------------------------------------------
    def _next_trial(self):
        """-> a Trial to train, "wait" (others still train) or None (nothing left)."""
        import warnings

        import optuna

        with warnings.catch_warnings():  # "experimental" since optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)  # RDB: trials of vanished machines
        fail_dead_trials(self.study, self.client, self.storage)
        states = point_states(self.study, self.revision, self.sweep.tuned)
        for key, trial in states.retry.items():  # transient failures: queue them again
            requeue(self.study, trial)
            states.in_flight.add(key)
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if not waiting:
            if self.points_left(states) <= 0:
                running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                return "wait" if running else None
            if self.stages is not None:
                planned = self.stages.next(states, self._budget())
                if planned is None or planned == "wait":
                    return planned
                self._enqueue(*planned)
                if planned[0] == "fail":  # told FAIL already: plan the next one
                    return self._next_trial()
            elif self.finite:
                point = next((p for p in sp.points(self.params)
                              if point_key(p) not in states.taken), None)
                if point is None:
                    return None
                self.study.enqueue_trial(point,
                                         user_attrs=queued(revision=self.revision, attempt=1))
        for _ in range(MAX_DUPLICATE_ASKS):
            trial = self.study.ask(self.distributions)
            frozen = self.study.get_trials(deepcopy=False)[trial.number]
            # (a queued trial without params got a sampled point)
            key = trial_point(frozen, self.sweep.tuned)
            twin = self._twin(key, trial.number)
            if twin is None:
                write(trial, revision=self.revision)
                if (TrialRecord.of(frozen).retry_of is None
                        and _rdb_original(frozen) != trial.number):
                    write(trial, retry_of=_rdb_original(frozen))  # an RDB heartbeat retry
                return trial
            # not a point: bookkeeping only
            write(trial, duplicate_of=twin,
                  fail_reason=f"the sampler proposed trial {twin}'s point again")
            self.study.tell(trial, state=TrialState.FAIL)
        return None  # the sampler keeps proposing trained points: the space is used up for it

    def _enqueue(self, stage: str | None, params: dict, reason: str = "") -> None:
        """Queue the planned point; a main point whose every tuned value failed is told FAIL
        for good at once (nothing to train it at)."""
        if stage != "fail":
            extra = {"stage": stage} if stage else {}
            self.study.enqueue_trial(params, user_attrs=queued(revision=self.revision, attempt=1,
                                                               **extra))
            return
        self.study.enqueue_trial(params, user_attrs=queued(revision=self.revision, attempt=1))
        trial = self.study.ask(self.distributions)
        write(trial, fail_reason=reason, final=True)
        self.study.tell(trial, state=TrialState.FAIL)

    def _twin(self, key: str, number: int) -> int | None:
        """Another trial of the same point (done, running or queued), if any."""
        for t in self.study.get_trials(deepcopy=False):
            rec = TrialRecord.of(t)
            if (t.number != number and rec.is_point and rec.revision == self.revision
                    and t.state != TrialState.FAIL and trial_point(t, self.sweep.tuned) == key):
                return t.number
        return None

    # -- the loop -------------------------------------------------------------------------
    def run(self, lock) -> None:
        deadline = time.monotonic() + self.sweep.timeout if self.sweep.timeout else None
        failures = 0
        while deadline is None or time.monotonic() < deadline:
            if failures >= MAX_CONSECUTIVE_FAILURES:
                self.events("stopping", failures=failures, last=self.last_failure)
                break
            with lock:
                trial = self._next_trial()
            if trial is None:
                break
            if trial == "wait":  # others still train: stay to retry them if their worker dies
                time.sleep(2.0)
                continue
            outcome = self._train(trial)
            failures = failures + 1 if outcome.state == "FAIL" else 0

    def _train(self, trial) -> Outcome:
        from ablate.sweep.objective import deterministic, environmental, reason_of
        from ablate.tracking.naming import arm_name

        values = dict(trial.params)
        write(trial, pid=os.getpid())  # pid before host: the reaper needs both
        write(trial, host=socket.gethostname())
        stage = TrialRecord.of(trial).stage
        tags = {STUDY: self.sweep.spec.study, TRIAL: str(trial.number),
                POINT: str(original_number(self.study.get_trials(deepcopy=False)[trial.number])),
                REVISION: str(self.revision), **({STAGE: stage} if stage else {})}
        self.events("start", trial=trial, values=values)
        beat = Heartbeat(self.storage, trial_id(self.storage, self.study, trial.number))
        try:
            cfg = self.sweep.config_for(values, stage)  # resolved once per trial
            name = f"t{trial.number:03d}-{values.get('arm') or arm_name(cfg)}"
            if stage:  # a tuning trial says so, and at which value
                name += f"-{stage}-" + "-".join(f"{values[k]}" for k in self.sweep.tuned)
            write(trial, run_name=name)
            outcome = run_trial(self.sweep, trial, values, cfg, self.parent, tags, self.progress)
        except Exception as e:  # noqa: BLE001 - outside training (a store, a config): recorded
            if is_full(e):  # a full store: stop the sweep (the trial resumes next run)
                raise StoreFull(reason_of(e)) from e
            outcome = Outcome("FAIL", reason=reason_of(e), retry=not deterministic(e),
                              environmental=environmental(e))
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: FAIL now, the next run resumes it
            from ablate.sweep.workers import parent_died

            write(trial, fail_reason=f"{INTERRUPTED}: the sweep's parent process died"
                  if parent_died() else f"{INTERRUPTED} (Ctrl-C or SIGTERM)")
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        except StoreFull as e:  # the sweep stops; FAIL the trial if the store still takes it
            try:  # (else it stays RUNNING until the next run reaps it)
                write(trial, fail_reason=f"the disk is full: {e}"[:500], environmental=True)
                self.study.tell(trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 - the journal's disk is full too
                pass
            raise
        finally:
            beat.close()
        self._tell(trial, outcome)
        self.events("end", trial=trial, outcome=outcome)
        return outcome

    def _tell(self, trial, outcome: Outcome) -> None:
        if outcome.state == "COMPLETE":
            self.study.tell(trial, outcome.values)
            return
        if outcome.state == "PRUNED":
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        self.last_failure = outcome.reason
        write(trial, fail_reason=outcome.reason)
        if outcome.environmental:
            write(trial, environmental=True)
        if not outcome.retry:
            write(trial, final=True)  # deterministic: retrying fails the same way
        self.study.tell(trial, state=TrialState.FAIL)


class Heartbeat:
    """RDB storages only: a daemon thread that records a heartbeat for the running trial every
    heartbeat interval until `close`, as `study.optimize` would (ask/tell does not), so other
    machines can fail the trial if this one disappears; inert on other storages."""

    def __init__(self, storage, trial_id: int):
        self.stop = threading.Event()
        self.thread = None
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        if interval:

            def beat() -> None:
                while not self.stop.wait(interval):
                    storage.record_heartbeat(trial_id)

            storage.record_heartbeat(trial_id)
            self.thread = threading.Thread(target=beat, daemon=True)
            self.thread.start()

    def close(self) -> None:
        self.stop.set()
