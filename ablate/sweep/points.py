"""Points, not attempts: a *point* is one configuration (a trial's params) of the study's
current revision. Where each stands: done (a COMPLETE or PRUNED trial), failed for good (its
last attempt failed deterministically, or used the last of MAX_ATTEMPTS), in flight (a
trial RUNNING or queued), or to retry (its last attempt failed transiently). `requeue`
queues a point again with the seeds it already finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from ablate.sweep.record import TrialRecord, queued

MAX_ATTEMPTS = 4  # the first try and 3 retries


def point_key(params: dict[str, Any], stage: str | None = None) -> str:
    """A point's identity: its params, and its stage when it is not the main one (a tuning
    trial of a point is another point than the point itself)."""
    return json.dumps({**params, "__stage": stage} if stage else params, sort_keys=True,
                      default=str)


def trial_point(t, tuned: tuple[str, ...] = ()) -> str:
    """The point a trial is of. A main-stage trial of a study with `tune:` carries its chosen
    values as params: without them it is the space's point, as before tuning."""
    stage = TrialRecord.of(t).stage
    params = params_of(t)
    if stage is None and tuned:
        params = {k: v for k, v in params.items() if k not in tuned}
    return point_key(params, stage)


@dataclass
class PointStates:
    done: set[str]
    failed: dict[str, str]  # point -> reason (failed for good)
    in_flight: set[str]
    retry: dict[str, Any]  # point -> its last FAIL trial, to be queued again

    @property
    def taken(self) -> set[str]:
        return self.done | set(self.failed) | self.in_flight


def point_states(study, revision: int, tuned: tuple[str, ...] = (),
                 stages: tuple[str | None, ...] | None = None) -> PointStates:
    """The points of `revision` and where each stands (trials of other revisions and
    duplicate bookkeeping are not points); `tuned`: the keys a `tune:` stage chooses;
    `stages`: only the points of these stages (None: the main stage), default all."""
    by_point: dict[str, list] = {}
    for t in study.get_trials(deepcopy=False):
        rec = TrialRecord.of(t)
        if not rec.is_point or rec.revision != revision:
            continue
        if stages is not None and rec.stage not in stages:
            continue
        by_point.setdefault(trial_point(t, tuned), []).append(t)
    done, failed, in_flight, retry = set(), {}, set(), {}
    for key, trials in by_point.items():
        states = {t.state for t in trials}
        if states & {TrialState.COMPLETE, TrialState.PRUNED}:
            done.add(key)
        elif states & {TrialState.RUNNING, TrialState.WAITING}:
            in_flight.add(key)
        else:  # every attempt failed: the last one decides
            last = max(trials, key=lambda t: t.number)
            rec = TrialRecord.of(last)
            if rec.final or rec.attempt >= MAX_ATTEMPTS:
                failed[key] = rec.fail_reason or "failed"
            else:
                retry[key] = last
    return PointStates(done, failed, in_flight, retry)


def params_of(t) -> dict[str, Any]:
    """A trial's point: its params, or for a queued one the params it was queued with."""
    if t.state == TrialState.WAITING and not t.params:
        return t.system_attrs.get("fixed_params") or {}
    return t.params


def requeue(study, trial) -> None:
    """Queue a copy of a trial whose last attempt failed transiently (or whose worker died):
    the same point, its finished seeds and the first attempt's checkpoint directory carried
    over; nothing once the attempts are used up."""
    rec = TrialRecord.of(trial)
    if rec.attempt < MAX_ATTEMPTS:
        # the machine's failure (a full disk, a lost connection) spends none of its attempts
        attempt = rec.attempt if rec.environmental else rec.attempt + 1
        study.enqueue_trial(trial.params, user_attrs=queued(
            retry_of=original_number(trial), attempt=attempt, revision=rec.revision,
            repeats_done=rec.repeats_done, **({"stage": rec.stage} if rec.stage else {})))


def original_number(trial) -> int:
    """The first attempt's number: recorded on a retry, else the trial RDB heartbeats retried
    (Optuna's own record), else the trial's own. It keys the checkpoint directory."""
    rec = TrialRecord.of(trial)
    return rec.retry_of if rec.retry_of is not None else _rdb_original(trial)


def _rdb_original(trial) -> int:
    """The first attempt's number of a trial that RDB heartbeats retried, else its own."""
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # "experimental" since optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if rdb is None else rdb
