"""`ablate doctor --fix`: repair what the diagnosis finds without losing anything.

Dead RUNNING trials become FAIL and are queued again (`ablate.sweep.reaper.reap_dead_trials`,
the same code a re-run of the sweep uses), stale runs are closed (FINISHED when their trial
finished, FAILED otherwise), the parent run is closed KILLED when nothing runs, a FINISHED
run of a FAILED trial is closed FAILED with the trial's reason. A COMPLETE trial is never
changed, nothing is deleted.
"""

from __future__ import annotations

from ablate.sweep.doctor.diagnosis import (
    DEAD_TRIAL,
    FINISHED_RUN_FAILED_TRIAL,
    NO_WORKER,
    ORPHAN_RUN,
    ORPHAN_WORKER,
    RETRY_PENDING,
    RUN_STATUS_FOR,
    STALE_PARENT,
    STALE_RUN,
    Report,
)
from ablate.sweep.doctor.read import Stores, check, open_stores
from ablate.sweep.record import TrialRecord
from ablate.tracking.tags import FAIL_REASON, STATE


def fix(study: str, storage: str | None = None, tracking_uri: str | None = None) -> Report:
    """Repair what `diagnose` finds; -> the report after the repair (`actions`: what changed).
    Never deletes anything, never changes a COMPLETE trial; a FINISHED run changes only when
    its trial FAILED."""
    from ablate.sweep.reaper import reap_dead_trials

    stores = open_stores(study, storage, tracking_uri)
    client = stores.client
    before = check(stores)
    actions: list[str] = [f"journal {stores.cut.summary()}"] if stores.cut is not None else []
    _fix_unstarted(stores, before, actions)
    orphans = [p for p in before.problems if p.kind == ORPHAN_WORKER]
    for p in orphans:  # SIGTERM: the worker fails its trial itself and exits; queued again
        from ablate.sweep.points import requeue

        pid = TrialRecord.of(stores.study.get_trials(deepcopy=False)[p.trial]).pid
        if _stop_worker(pid):
            trial = stores.study.get_trials(deepcopy=False)[p.trial]
            if trial.state.name == "FAIL":
                requeue(stores.study, trial)
            actions.append(f"worker pid {pid} (trial {p.trial}) stopped, its point queued again")
    if orphans:
        before = check(stores)
    for p in before.problems:
        if p.kind == RETRY_PENDING:
            from ablate.sweep.points import requeue

            requeue(stores.study, stores.study.get_trials(deepcopy=False)[p.trial])
            actions.append(f"trial {p.trial}'s point queued again (it failed for the machine)")
    if any(p.kind == DEAD_TRIAL for p in before.problems):
        for n in reap_dead_trials(stores.study, _Guarded(client, actions), stores.storage):
            actions.append(f"trial {n} -> FAIL (worker dead), queued again")
    if client is not None:
        # the trials' states after the reaping decide how their runs end
        after = check(stores)
        by_number = {t.number: t for t in stores.study.get_trials(deepcopy=False)}
        for p in after.problems:
            if p.kind in (STALE_RUN, ORPHAN_RUN) and p.run_id and p.fix:
                trial = by_number.get(p.trial) if p.trial is not None else None
                state = trial.state.name if trial is not None else "FAIL"
                status = RUN_STATUS_FOR.get(state, "FAILED")
                _close(client, p.run_id, status,
                       f"closed by ablate doctor (trial {state})", actions)
            elif p.kind == FINISHED_RUN_FAILED_TRIAL:
                reason = TrialRecord.of(by_number[p.trial]).fail_reason or "trial failed"
                _fail_finished(client, p.run_id, reason, actions)
        after = check(stores)
        if any(p.kind == STALE_PARENT for p in after.problems):
            _close(client, after.parent_run_id, "KILLED", "closed by ablate doctor", actions)
    report = check(stores)
    report.actions = actions
    return report


def _fix_unstarted(stores: Stores, before: Report, actions: list[str]) -> None:
    """A trial that died before it got parameters is put back in the queue as it is: failed
    with no params it would break BruteForceSampler ("param_name mismatch") for every later
    ask. One that had its parameters but no worker recorded is failed."""
    from optuna.trial import TrialState

    from ablate.sweep.reaper import fail_trial, trial_id

    opt, st = stores.study, stores.storage
    for p in before.problems:
        if p.kind not in (DEAD_TRIAL, NO_WORKER):
            continue
        t = opt.get_trials(deepcopy=False)[p.trial]
        if t.state == TrialState.RUNNING and not t.params:
            st.set_trial_state_values(trial_id(st, opt, t.number), TrialState.WAITING)
            actions.append(f"trial {t.number} -> WAITING (died before it got parameters)")
        elif p.kind == NO_WORKER and t.state == TrialState.RUNNING:
            fail_trial(st, opt, t.number, "no worker recorded (died while starting)")
            actions.append(f"trial {t.number} -> FAIL (no worker recorded)")


class _Guarded:
    """The MlflowClient handed to `reap_dead_trials`: it only touches runs that are still
    RUNNING (a run that ended FINISHED, or KILLED/FAILED with its own reason, keeps its status
    and tags), and no-ops without a store."""

    def __init__(self, client, actions: list[str]):
        self._client, self._actions = client, actions

    def _running(self, run_id: str) -> bool:
        if self._client is None:
            return False
        try:
            return self._client.get_run(run_id).info.status == "RUNNING"
        except Exception:  # noqa: BLE001 - not in this store
            return False

    def get_run(self, run_id: str):
        if self._client is None:
            raise LookupError(run_id)
        return self._client.get_run(run_id)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        if self._running(run_id):
            self._client.set_tag(run_id, key, value)

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        if self._running(run_id):
            self._client.set_terminated(run_id, status=status)
            self._actions.append(f"run {run_id} -> {status}")


def _stop_worker(pid: int | None, wait: float = 60.0) -> bool:
    """SIGTERM to an orphaned worker and wait for it to end its trial and exit."""
    import os
    import signal
    import time

    from ablate.sweep import proc

    if not proc.alive(pid):
        return False
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + wait
    while proc.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not proc.alive(pid)


def _close(client, run_id: str, status: str, reason: str, actions: list[str]) -> None:
    r = client.get_run(run_id)
    if r.info.status != "RUNNING":
        return
    if status != "FINISHED":
        client.set_tag(run_id, FAIL_REASON, reason)
    if status == "FAILED":
        client.set_tag(run_id, STATE, "FAILED")
    client.set_terminated(run_id, status=status)
    actions.append(f"run {run_id} -> {status}")


def _fail_finished(client, run_id: str, reason: str, actions: list[str]) -> None:
    """A FINISHED run of a FAILED trial ends FAILED with the trial's reason (its end time,
    metrics and artifacts stay as they are)."""
    r = client.get_run(run_id)
    if r.info.status != "FINISHED":
        return
    client.set_tag(run_id, FAIL_REASON, reason[:5000])
    client.set_tag(run_id, STATE, "FAILED")
    client.set_terminated(run_id, status="FAILED", end_time=r.info.end_time)
    actions.append(f"run {run_id} FINISHED -> FAILED (its trial failed: {reason[:80]})")
