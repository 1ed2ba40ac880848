"""The doctor's diagnosis: a pure function from what was read about a study (its trials, its
MLflow runs, which worker processes live) to a report of its problems. Nothing here reads a
store or /proc (`read.py` gathers a `Snapshot`), so it runs on hand-made inputs.

Trials are Optuna `FrozenTrial`s, runs MLflow `Run`s (`optuna.trial.create_trial` and
`mlflow.entities.Run` make them by hand). Below: what `ablate doctor` reports (the problem
kinds, a problem, a trial's row, the report), the diagnosis of the trials and their runs,
and the runs that pass for results although they are not (a FINISHED run of a FAILED
trial, a COMPLETE trial without its objective, one configuration and seed trained twice).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from ablate.sweep.record import Revision, TrialRecord, parse_objective
from ablate.tracking.runs import number
from ablate.tracking.tags import DENSE_PARENT, KIND, REVISION, ROLE, STATE, TRIAL

# what an MLflow run should end as, by the state of its trial
RUN_STATUS_FOR = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
                  "WAITING": "FAILED", "RUNNING": "FAILED"}

# problem kinds (the `kind` column of the report)
DEAD_TRIAL = "dead_trial"  # RUNNING in Optuna, its worker process on this host is gone
ORPHAN_WORKER = "orphan_worker"  # RUNNING in a worker of --workers N whose sweep is gone
RETRY_PENDING = "retry_pending"  # FAIL for the machine (full disk, ...): its point not queued yet
NO_WORKER = "no_worker"  # RUNNING in Optuna, no host/pid recorded (died while starting)
STALE_RUN = "stale_run"  # MLflow run RUNNING although its trial is not running
STALE_PARENT = "stale_parent"  # the study's parent run RUNNING with nothing running
MISSING_RUN = "missing_run"  # COMPLETE trial without an MLflow run
ORPHAN_RUN = "orphan_run"  # MLflow run of the study that no trial knows
FINISHED_RUN_FAILED_TRIAL = "finished_run_failed_trial"  # run FINISHED, its trial FAIL
MISSING_OBJECTIVE = "missing_objective"  # COMPLETE trial without its objective value or metric
DUPLICATE_RUN = "duplicate_run"  # FINISHED runs of one (configuration, seed): one sample twice


@dataclass
class Problem:
    kind: str
    detail: str
    fix: str  # what `--fix` does about it ("" when it cannot: reported only)
    trial: int | None = None
    run_id: str | None = None


@dataclass
class TrialRow:
    number: int
    state: str
    params: dict[str, Any]
    host: str | None
    pid: int | None
    worker: str  # alive | dead | other host | unknown | "" (not running)
    run_ids: list[str]
    run_status: dict[str, str]  # run id -> MLflow status ("missing" when not in the store)
    note: str = ""


@dataclass
class Report:
    study: str
    storage: str  # masked
    tracking_uri: str  # masked
    states: dict[str, int]
    trials: list[TrialRow]
    runs: dict[str, str]  # run id -> status, every run of the study
    parent_run_id: str | None
    parent_status: str | None
    problems: list[Problem] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # what fix() did
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0: consistent; 1: problems found and not (or not all) fixed."""
        return 0 if self.ok else 1


# -- the diagnosis ---------------------------------------------------------------------------
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
    orphan_pids: set[int] = field(default_factory=set)  # live workers whose sweep is gone
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
                STALE_PARENT,
                f"parent run {snap.parent_run_id} RUNNING with no trial or sweep running",
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
                   {rid: (snap.runs[rid].info.status if rid in snap.runs else "missing")
                    for rid in ids})
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
        elif pid in snap.orphan_pids:
            row.worker = "orphan"
            live = True  # it trains on, for nobody: a re-run would wait on it
            report.problems.append(Problem(
                ORPHAN_WORKER, f"trial {t.number} RUNNING in worker pid {pid}, whose sweep is "
                "gone", "stop it (SIGTERM: its trial fails, its checkpoint is kept, it is "
                "queued again)", trial=t.number))
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
        first = rec.retry_of if rec.retry_of is not None else t.number
        retried = any(TrialRecord.of(u).retry_of == first and u.number > t.number
                      for u in snap.trials)
        if rec.environmental and not rec.final and not retried:
            report.problems.append(Problem(
                RETRY_PENDING, f"trial {t.number} failed for the machine, not its point "
                f"({(rec.fail_reason or '')[:80]}): no attempt spent, not queued yet",
                "queue its point again (the next `ablate sweep` does too)", trial=t.number))
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


def _check_unknown_run(snap: Snapshot, report: Report, rid: str, r, by_number: dict,
                       live: bool) -> None:
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


# -- runs that pass for results -------------------------------------------------------------
# params that name or place a run rather than define what it trains (the rest, seed
# included, is the configuration; as ablate.sweep.fingerprint's NOT_DEFINING)
RUN_IDENTITY = ("tracking.", "trainer.progress", "data.num_workers")


def finished_runs_of_failed_trials(trials, runs: dict[str, Any], known_runs) -> list[Problem]:
    """Runs FINISHED (a result, to MLflow's UI and to anyone comparing there) whose trial
    FAILED. A seed that finished before another seed of its trial failed is a result: the
    retry of the point that carries it (`repeats_done`) counts it, so it is not one."""
    carried = {done.get("run_id") for t in trials if t.state.name != "FAIL"
               for done in TrialRecord.of(t).repeats_done.values() if "metrics" in done}
    out = []
    for rid, r in runs.items():
        trial = known_runs.get(rid)
        if (trial is None or trial.state.name != "FAIL" or r.info.status != "FINISHED"
                or rid in carried):
            continue
        reason = TrialRecord.of(trial).fail_reason or "no reason recorded"
        out.append(Problem(
            FINISHED_RUN_FAILED_TRIAL, f"run {rid} ({r.info.run_name}) FINISHED but trial "
            f"{trial.number} FAILED ({reason[:120]})", "close it FAILED with the trial's reason",
            trial=trial.number, run_id=rid))
    return out


def objective_metrics(revisions: list[Revision], trial, parent_run) -> list[str]:
    """The metrics a trial was optimising: its revision's definition on the study, else the
    parent run's `objectives` param (`metric:direction,...`); [] when neither says."""
    by_number = {r.number: r for r in revisions}
    rev = by_number.get(TrialRecord.of(trial).revision)
    named = rev.definition.get("objectives") if rev is not None else None
    if named is None and parent_run is not None:
        named = [o for o in parent_run.data.params.get("objectives", "").split(",") if o]
    return [parse_objective(o)[0] for o in named or []]


def missing_objectives(revisions: list[Revision], trials, runs: dict[str, Any],
                       parent_run) -> list[Problem]:
    """COMPLETE trials whose value is missing or not finite, or whose FINISHED runs lack the
    objective metric: a number in the study that nothing in MLflow backs."""
    out = []
    for t in trials:
        if t.state.name != "COMPLETE":
            continue
        if not t.values or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                   for v in t.values):
            out.append(Problem(MISSING_OBJECTIVE, f"trial {t.number} COMPLETE with objective "
                               f"value(s) {t.values}", "", trial=t.number))
        for metric in objective_metrics(revisions, t, parent_run):
            for rid in TrialRecord.of(t).run_ids:
                r = runs.get(rid)
                if r is None or r.info.status != "FINISHED":
                    continue  # a missing run is MISSING_RUN's
                value = number(r.data.metrics, r.data.params, metric)
                if value is None or not math.isfinite(value):
                    out.append(Problem(MISSING_OBJECTIVE, f"trial {t.number} COMPLETE but its run "
                                       f"{rid} has {metric} = {value} in MLflow", "",
                                       trial=t.number, run_id=rid))
    return out


def duplicate_runs(runs: dict[str, Any]) -> list[Problem]:
    """FINISHED trial runs of one configuration and seed (every param but RUN_IDENTITY's, in
    one revision of the study): whatever pools them counts one sample twice."""
    groups: dict[tuple, list] = {}
    for r in runs.values():
        tags = r.data.tags
        if (r.info.status != "FINISHED" or TRIAL not in tags or "trainer.seed" not in r.data.params
                or tags.get(STATE) == "PRUNED"):
            continue  # a run that trained something, and whose result counts
        config = tuple(sorted((k, v) for k, v in r.data.params.items()
                              if not k.startswith(RUN_IDENTITY)))
        groups.setdefault((tags.get(REVISION, "1"), config), []).append(r)
    out = []
    for same in groups.values():
        if len(same) < 2:
            continue
        same.sort(key=lambda r: r.info.start_time or 0)
        ids = ", ".join(f"{r.info.run_id} (trial {r.data.tags['ablate.trial']})" for r in same)
        out.append(Problem(
            DUPLICATE_RUN, f"runs {ids} trained the same configuration with seed "
            f"{same[0].data.params.get('trainer.seed', '?')}: {len(same)} runs of one sample", "",
            trial=int(same[-1].data.tags[TRIAL]), run_id=same[-1].info.run_id))
    return out
