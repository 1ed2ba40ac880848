"""The doctor's diagnosis: a pure function from what was read about a study (its trials, its
MLflow runs, which worker processes live) to a report of its problems. Nothing here reads a
store or /proc (`read.py` gathers a `Snapshot`), so it runs on hand-made inputs.

Trials are Optuna `FrozenTrial`s, runs MLflow `Run`s (`optuna.trial.create_trial` and
`mlflow.entities.Run` make them by hand).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ablate.sweep.doctor.problems import (
    DEAD_TRIAL,
    MISSING_RUN,
    NO_WORKER,
    ORPHAN_RUN,
    RUN_STATUS_FOR,
    STALE_PARENT,
    STALE_RUN,
    Problem,
    Report,
    TrialRow,
)
from ablate.sweep.doctor.results import (
    duplicate_runs,
    finished_runs_of_failed_trials,
    missing_objectives,
)
from ablate.sweep.record import Revision, TrialRecord
from ablate.tracking.tags import DENSE_PARENT, KIND, ROLE, TRIAL

CLOSE_AFTER_S = 60.0  # a RUNNING trial without a recorded worker is a crash after this long


@dataclass
class Snapshot:
    """What the doctor knows about one study at one moment."""

    study: str
    storage: str  # masked, as the report shows it
    tracking_uri: str  # masked
    trials: list  # the study's FrozenTrials
    runs: dict[str, Any]  # run id -> MLflow Run: every active run of the study but its parent
    has_store: bool = True  # False: no MLflow store there (nothing was ever logged)
    parent_run_id: str | None = None
    parent_run: Any = None  # the parent's MLflow Run; None when the store does not have it
    revisions: list[Revision] = field(default_factory=list)  # the study's revisions
    host: str = ""  # this machine: RUNNING trials of other hosts are theirs to judge
    live_pids: set[int] = field(default_factory=set)  # worker pids of this host that are alive
    sweep_pids: list[int] = field(default_factory=list)  # live `ablate sweep`s of this ABLATE_HOME
    now: dt.datetime = field(default_factory=dt.datetime.now)


def diagnose_snapshot(snap: Snapshot) -> Report:
    """Every problem of the study, in the order the report lists them: the trials', the runs',
    the runs that pass for results, then the parent run's."""
    report = Report(
        study=snap.study, storage=snap.storage, tracking_uri=snap.tracking_uri, states={},
        trials=[], runs={rid: r.info.status for rid, r in snap.runs.items()},
        parent_run_id=snap.parent_run_id,
        parent_status=snap.parent_run.info.status if snap.parent_run is not None else None,
    )
    if not snap.has_store:
        report.notes.append(f"no MLflow store at {snap.tracking_uri} (nothing logged there yet)")
    known_runs: dict[str, Any] = {}  # run id -> trial
    live = False  # a trial that may still be training (alive here, or on another host)
    for t in snap.trials:
        live |= _check_trial(snap, t, report, known_runs)
    _check_runs(snap, report, known_runs, live)
    report.problems += finished_runs_of_failed_trials(snap.trials, snap.runs, known_runs)
    report.problems += missing_objectives(snap.revisions, snap.trials, snap.runs, snap.parent_run)
    report.problems += duplicate_runs(snap.runs)
    if report.parent_status == "RUNNING" and not live:
        if snap.sweep_pids:
            report.notes.append(f"parent run RUNNING: `ablate sweep` alive on this host (pid "
                                f"{', '.join(map(str, snap.sweep_pids))})")
        else:
            report.problems.append(Problem(
                STALE_PARENT, f"parent run {snap.parent_run_id} RUNNING with no trial or sweep running",
                "close it KILLED", run_id=snap.parent_run_id))
    return report


def _check_trial(snap: Snapshot, t, report: Report, known_runs: dict[str, Any]) -> bool:
    """Add trial `t`'s row and problems to `report`; -> whether it may still be training."""
    s = t.state.name
    report.states[s] = report.states.get(s, 0) + 1
    rec = TrialRecord.of(t)
    ids = rec.run_ids
    for rid in ids:
        known_runs[rid] = t
    t_host, pid = rec.host, rec.pid
    row = TrialRow(t.number, s, dict(t.params), t_host, pid, "", ids,
                   {rid: (snap.runs[rid].info.status if rid in snap.runs else "missing") for rid in ids})
    live = False
    if s == "RUNNING":
        if t_host is None or pid is None:
            age = (snap.now - t.datetime_start).total_seconds() if t.datetime_start else 1e9
            row.worker = "unknown"
            if age > CLOSE_AFTER_S:
                report.problems.append(Problem(
                    NO_WORKER, f"trial {t.number} RUNNING for {age:.0f}s with no worker recorded",
                    "queue it again (WAITING)" if not t.params else "FAIL it", trial=t.number))
            else:
                live = True
        elif t_host != snap.host:
            row.worker = f"other host ({t_host})"
            live = True  # RDB heartbeats decide there
        elif pid in snap.live_pids:
            row.worker = "alive"
            live = True
        else:
            row.worker = "dead"
            report.problems.append(Problem(
                DEAD_TRIAL, f"trial {t.number} RUNNING but its worker (pid {pid}) is gone",
                "FAIL it, close its run FAILED, queue a retry (resumes from its checkpoint)",
                trial=t.number))
    if s == "COMPLETE" and snap.has_store and not any(rid in snap.runs for rid in ids):
        report.problems.append(Problem(
            MISSING_RUN, f"trial {t.number} COMPLETE but has no MLflow run in {snap.tracking_uri}",
            "", trial=t.number))
        row.note = "no MLflow run"
    if s == "FAIL":
        row.note = (rec.fail_reason or "")[:200]
    report.trials.append(row)
    return live


def _check_runs(snap: Snapshot, report: Report, known_runs: dict[str, Any], live: bool) -> None:
    """Runs RUNNING although their trial ended or died, and runs no trial knows."""
    by_number = {t.number: t for t in snap.trials}
    for rid, r in snap.runs.items():
        trial = known_runs.get(rid)
        if trial is None:
            _check_unknown_run(snap, report, rid, r, by_number, live)
            continue
        if r.info.status != "RUNNING":
            continue
        if trial.state.name == "RUNNING" and running_live(trial, snap):
            continue
        if trial.state.name == "RUNNING":  # its trial is a dead one: fixed together with it
            report.problems.append(Problem(
                STALE_RUN, f"run {rid} RUNNING for trial {trial.number}, whose worker is gone",
                "close it FAILED (with the trial)", trial=trial.number, run_id=rid))
            continue
        want = RUN_STATUS_FOR[trial.state.name]
        report.problems.append(Problem(
            STALE_RUN, f"run {rid} RUNNING but trial {trial.number} is {trial.state.name}",
            f"close it {want}", trial=trial.number, run_id=rid))


def _check_unknown_run(snap: Snapshot, report: Report, rid: str, r, by_number: dict, live: bool) -> None:
    """A run of the study that no trial records: just created, a crashed attempt, a dense
    parent of upcycling, or an orphan."""
    tag = r.data.tags.get(TRIAL)
    owner = by_number.get(int(tag)) if tag and tag.isdigit() else None
    role = r.data.tags.get(ROLE)
    if r.info.status == "RUNNING" and running_live(owner, snap):
        return  # just created: its live trial records it in a moment
    if role != DENSE_PARENT and r.data.tags.get(KIND) != "study":
        if r.info.status in ("FAILED", "KILLED"):  # a crashed attempt: no result lost
            report.notes.append(f"run {rid} ({r.info.run_name}, {r.info.status}) belongs "
                                "to no trial (an attempt that died before its trial "
                                "recorded it)")
            return
        report.problems.append(Problem(
            ORPHAN_RUN, f"run {rid} ({r.info.run_name}, {r.info.status}) belongs to no trial"
            + (f" (tag ablate.trial={tag})" if tag else ""),
            "close it FAILED" if r.info.status == "RUNNING" else "", run_id=rid))
        return
    if r.info.status == "RUNNING" and not live:  # a dense parent with nothing running
        report.problems.append(Problem(
            STALE_RUN, f"run {rid} ({r.info.run_name}) RUNNING with no live worker",
            "close it FAILED", run_id=rid))


def running_live(trial, snap: Snapshot) -> bool:
    """A RUNNING trial that may still be training (its worker alive, or on another host)."""
    if trial is None or trial.state.name != "RUNNING":
        return False
    rec = TrialRecord.of(trial)
    t_host, pid = rec.host, rec.pid
    if t_host is None or pid is None:
        return True  # starting: give it the benefit of the doubt (see NO_WORKER)
    return t_host != snap.host or pid in snap.live_pids
