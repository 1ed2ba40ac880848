"""Trials whose worker died (SIGKILL, out of memory, power loss) stay RUNNING in a journal
or SQLite study: nothing else notices. Every worker, every re-run of the sweep and
`ablate doctor --fix` look for RUNNING trials of THIS host whose process is gone, fail
them in Optuna and MLflow, and leave the point to be retried by the sweep loop (which
queues it again, up to its attempt limit, to resume from its last checkpoint).
Other hosts' trials are left to RDB heartbeats (PostgreSQL storage).
"""

from __future__ import annotations

import socket

from ablate.sweep.proc import alive

DIED = "worker process died"


def trial_id(storage, study, number: int) -> int:
    """The storage's id of trial `number` (public API; FrozenTrial keeps it private)."""
    sid = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(sid, number)


def reap_dead_trials(study, client, storage) -> list[int]:
    """FAIL the RUNNING trials of this host whose worker is gone; -> their numbers.
    `storage`: the study's storage object (the one it was opened with)."""
    from optuna.trial import TrialState

    host, reaped = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") != host or "pid" not in t.user_attrs:
            continue  # another host's, or its worker is still starting it
        if alive(t.user_attrs.get("pid")):
            continue
        fail_trial(storage, study, t.number, DIED)
        run_id = t.user_attrs.get("mlflow_run_id")
        for rid in t.user_attrs.get("mlflow_run_ids") or ([run_id] if run_id else []):
            close_run_failed(client, rid, DIED)
        reaped.append(t.number)
    return reaped


def fail_trial(storage, study, number: int, reason: str) -> None:
    from optuna.trial import TrialState

    tid = trial_id(storage, study, number)
    storage.set_trial_user_attr(tid, "fail_reason", reason)
    storage.set_trial_state_values(tid, TrialState.FAIL)


def close_run_failed(client, run_id: str, reason: str) -> None:
    try:
        if client.get_run(run_id).info.status != "RUNNING":
            return  # it ended on its own (FINISHED seeds of a multi-seed trial stay so)
    except Exception:  # noqa: BLE001 - deleted from the store: nothing to close
        return
    client.set_tag(run_id, "ablate.state", "FAILED")
    client.set_tag(run_id, "ablate.fail_reason", reason)
    client.set_terminated(run_id, status="FAILED")

