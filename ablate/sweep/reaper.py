"""Trials whose worker died (SIGKILL, out of memory, power loss) stay RUNNING in a journal
or SQLite study: nothing else notices. Every worker, every re-run of the sweep and
`ablate doctor --fix` look for RUNNING trials of THIS host whose process is gone, fail
them in Optuna and MLflow, and leave the point to be retried by the sweep loop (which
queues it again, up to its attempt limit, to resume from its last checkpoint).
Other hosts' trials are left to RDB heartbeats (PostgreSQL storage).
"""

from __future__ import annotations

import socket

from ablate.sweep.points import requeue
from ablate.sweep.proc import alive
from ablate.sweep.record import TrialRecord, write_to_storage
from ablate.tracking.runs import find_runs
from ablate.tracking.tags import FAIL_REASON, STATE

DIED = "worker process died"
INTERRUPTED = "interrupted"  # how the fail reason of a stopped trial begins


def trial_id(storage, study, number: int) -> int:
    """The storage's id of trial `number` (public API; FrozenTrial keeps it private)."""
    sid = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(sid, number)


def fail_dead_trials(study, client, storage) -> list[int]:
    """FAIL the RUNNING trials of this host whose worker is gone; -> their numbers.
    `storage`: the study's storage object (the one it was opened with). The sweep loop
    queues their points again as it plans the next trial."""
    from optuna.trial import TrialState

    host, reaped = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        rec = TrialRecord.of(t)
        if rec.host != host or rec.pid is None:
            continue  # another host's, or its worker is still starting it
        if alive(rec.pid):
            continue
        fail_trial(storage, study, t.number, DIED)
        for rid in rec.run_ids:
            close_run(client, rid, "FAILED", DIED)
        reaped.append(t.number)
    return reaped


def reap_dead_trials(study, client, storage) -> list[int]:
    """`ablate doctor --fix`: `fail_dead_trials`, and queue each point again at once (as a
    re-run of the sweep would)."""
    reaped = fail_dead_trials(study, client, storage)
    for number in reaped:
        requeue(study, study.get_trials(deepcopy=False)[number])
    return reaped


def fail_trial(storage, study, number: int, reason: str) -> None:
    from optuna.trial import TrialState

    tid = trial_id(storage, study, number)
    write_to_storage(storage, tid, fail_reason=reason)
    storage.set_trial_state_values(tid, TrialState.FAIL)


def close_interrupted_runs(study, client) -> list[str]:
    """Close KILLED the MLflow runs that interrupted trials left RUNNING: a trial stopped
    while its tracking server did not answer (a sweep's own server dies with the sweep)
    ends FAIL in the study but cannot end its run; -> the ids closed now. One search for
    the store's RUNNING runs, whatever the number of interrupted trials."""
    from optuna.trial import TrialState

    reasons = {rid: rec.fail_reason
               for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
               if ((rec := TrialRecord.of(t)).fail_reason or "").startswith(INTERRUPTED)
               for rid in rec.run_ids}
    if not reasons:
        return []
    running = {r.info.run_id for r in find_runs(client, "attributes.status = 'RUNNING'")}
    closed = [rid for rid in reasons if rid in running]
    for rid in closed:
        end_with_reason(client, rid, "KILLED", reasons[rid])
    return closed


def close_run(client, run_id: str, status: str, reason: str) -> bool:
    """End a run still RUNNING with `status` and its reason; -> whether it was RUNNING."""
    try:
        if client.get_run(run_id).info.status != "RUNNING":
            return False  # it ended on its own (FINISHED seeds of a multi-seed trial stay so)
    except Exception:  # noqa: BLE001 - deleted from the store: nothing to close
        return False
    end_with_reason(client, run_id, status, reason)
    return True


def end_with_reason(client, run_id: str, status: str, reason: str) -> None:
    client.set_tag(run_id, STATE, status)
    client.set_tag(run_id, FAIL_REASON, reason)
    client.set_terminated(run_id, status=status)
