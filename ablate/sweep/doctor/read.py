"""`ablate doctor --study NAME [--fix]`: is the study's Optuna state consistent with MLflow?

After a crash (SIGKILL of a worker, power loss, a full disk, Ctrl-C at the wrong moment) a
study can be left with

- RUNNING trials whose worker process (same host, user attr `pid`) is gone,
- MLflow child runs still RUNNING although their trial ended (or died),
- the study's parent run RUNNING with no sweep or worker left,
- COMPLETE trials without an MLflow run, or MLflow runs that belong to no trial,
- MLflow runs FINISHED although their trial FAILED (they look like results),
- COMPLETE trials without their objective (no value, or the metric not in their run),
- two FINISHED runs of the same configuration and seed (one sample counted twice),
- a journal file with half-written records (repaired whenever the study is opened:
  `ablate.sweep.journal`; the doctor says what was cut and where it is kept).

`diagnose()` only reads (it never creates a store, a study or a run). `fix()` repairs what can
be repaired without losing anything: dead RUNNING trials become FAIL and are queued again
(`ablate.sweep.runner.reap_dead_trials`, the same code a re-run of the sweep uses), stale runs
are closed (FINISHED when their trial finished, FAILED otherwise), the parent run is closed
KILLED when nothing runs, a FINISHED run of a FAILED trial is closed FAILED with the trial's
reason. A COMPLETE trial is never changed, nothing is deleted.

```python
from ablate.doctor import diagnose, fix

report = diagnose("quickstart")          # default stores under $ABLATE_HOME
print(report.ok, [p.kind for p in report.problems])
report = fix("quickstart")               # -> the report after the repair; report.actions
```
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.errors import ConfigError
from ablate.tracking.store import check_reachable, mask, resolve_tracking_uri

# what an MLflow run should end as, by the state of its trial
RUN_STATUS_FOR = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
                  "WAITING": "FAILED", "RUNNING": "FAILED"}
CLOSE_AFTER_S = 60.0  # a RUNNING trial without a recorded worker is a crash after this long

# problem kinds (the `kind` column of the report)
DEAD_TRIAL = "dead_trial"  # RUNNING in Optuna, its worker process on this host is gone
NO_WORKER = "no_worker"  # RUNNING in Optuna, no host/pid recorded (died while starting)
STALE_RUN = "stale_run"  # MLflow run RUNNING although its trial is not running
STALE_PARENT = "stale_parent"  # the study's parent run RUNNING with nothing running
MISSING_RUN = "missing_run"  # COMPLETE trial without an MLflow run
ORPHAN_RUN = "orphan_run"  # MLflow run of the study that no trial knows
FINISHED_RUN_FAILED_TRIAL = "finished_run_failed_trial"  # run FINISHED, its trial FAIL
MISSING_OBJECTIVE = "missing_objective"  # COMPLETE trial without its objective value or metric
DUPLICATE_RUN = "duplicate_run"  # FINISHED runs of one (configuration, seed): one sample twice

# params that name or place a run rather than define what it trains (the rest, seed
# included, is the configuration; as ablate.sweep.fingerprint's NOT_DEFINING)
RUN_IDENTITY = ("tracking.", "trainer.progress", "data.num_workers")


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


# -- reading the stores (never creating them) ------------------------------------------------
def _open_client(uri: str):
    """MlflowClient on `uri`, or None when the local SQLite file does not exist (nothing was
    ever logged there; opening it would create it)."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None
    check_reachable(uri)  # a dead server: one line in seconds, not minutes of retries
    return MlflowClient(tracking_uri=uri)


def _search(client, filter_string: str) -> list:
    from mlflow.entities import ViewType

    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    out, token = [], None
    while exp_ids:
        page = client.search_runs(exp_ids, filter_string=filter_string, max_results=1000,
                                  page_token=token, run_view_type=ViewType.ACTIVE_ONLY)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    return out


def _study_runs(client, study: str, parent: str | None) -> dict[str, Any]:
    """Every active run of the study: tagged `ablate.study`, or a child of its parent run
    (upcycling's dense parents carry only the parent tag)."""
    if client is None:
        return {}
    try:
        found = _search(client, f"tags.`ablate.study` = '{study}'")
        if parent:
            found += _search(client, f"tags.`mlflow.parentRunId` = '{parent}'")
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a broken or unreachable store: one line
        raise ConfigError("--tracking-uri", mask(client.tracking_uri), "a readable MLflow store",
                          f"cannot read it ({type(e).__name__})") from None
    return {r.info.run_id: r for r in found}


def _home_of(pid: int) -> Path | None:
    """The ABLATE_HOME a process writes to (its environment, relative to its cwd)."""
    try:
        env = dict(kv.split(b"=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                   if b"=" in kv)
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    home = Path(os.fsdecode(env.get(b"ABLATE_HOME", b"ablate-runs"))).expanduser()
    return (cwd / home).resolve()


def _sweep_processes() -> list[int]:
    """Live `ablate sweep` processes on this host writing to this ABLATE_HOME: their parent
    run is legitimately RUNNING even between two trials."""
    from ablate import paths

    here, pids = paths.home(), []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(entry.parent.name)
        try:
            words = [a.decode(errors="replace") for a in entry.read_bytes().split(b"\0")]
        except OSError:
            continue
        if pid != os.getpid() and "sweep" in words and any(
                w == "ablate" or w.endswith("/ablate") for w in words) and _home_of(pid) == here:
            pids.append(pid)
    return pids


def _open(study: str, storage: str | None, tracking_uri: str | None):
    """-> (the Optuna study, the tracking URI, an MlflowClient or None, what was cut from
    the journal or None)."""
    from ablate.reporting.collect import open_optuna_study
    from ablate.sweep.spec import check_study_name

    check_study_name(study, "--study")
    uri = resolve_tracking_uri(tracking_uri)
    cut = _repair_journal(study, storage)
    with warnings.catch_warnings():  # RDB heartbeat options are "experimental": not news here
        warnings.simplefilter("ignore")
        opt = open_optuna_study(study, storage)
    return opt, uri, _open_client(uri), cut


def _repair_journal(study: str, storage: str | None):
    """Cut a journal's half-written records here, to show it in the report (opening the study
    would cut them anyway, with a line on stderr: `ablate.sweep.journal`). A journal with a
    fragment glued to a good record cannot even be read before this."""
    from ablate import paths
    from ablate.sweep.journal import repair

    if storage is None:
        return repair(paths.default_storage_path(study), report=False)
    if storage.endswith(".journal") or storage.startswith("journal://"):
        return repair(Path(storage.removeprefix("journal://")), report=False)
    return None


def _diagnose(opt, uri: str, client, storage: str | None) -> Report:
    from ablate import paths
    from ablate.sweep.runner import _alive

    host = socket.gethostname()
    name = opt.study_name
    parent = opt.user_attrs.get("mlflow_parent_run_id")
    runs = _study_runs(client, name, parent)
    parent_run = runs.pop(parent, None) if parent else None
    if parent and parent_run is None and client is not None:
        try:  # the parent may live in an experiment of another name: look it up directly
            parent_run = client.get_run(parent)
        except Exception:  # noqa: BLE001 - deleted from the store
            parent_run = None
    trials = opt.get_trials(deepcopy=False)
    report = Report(
        study=name,
        storage=mask(storage or str(paths.default_storage_path(name))),
        tracking_uri=mask(uri),
        states={},
        trials=[],
        runs={rid: r.info.status for rid, r in runs.items()},
        parent_run_id=parent,
        parent_status=parent_run.info.status if parent_run is not None else None,
    )
    if client is None:
        report.notes.append(f"no MLflow store at {mask(uri)} (nothing logged there yet)")

    known_runs: dict[str, Any] = {}  # run id -> trial
    live = False  # a trial that may still be training (alive here, or on another host)
    now = None
    for t in trials:
        s = t.state.name
        report.states[s] = report.states.get(s, 0) + 1
        ids = _run_ids(t)
        for rid in ids:
            known_runs[rid] = t
        t_host, pid = t.user_attrs.get("host"), t.user_attrs.get("pid")
        worker = ""
        row = TrialRow(t.number, s, dict(t.params), t_host, pid, worker, ids,
                       {rid: (runs[rid].info.status if rid in runs else "missing") for rid in ids})
        if s == "RUNNING":
            if t_host is None or pid is None:
                import datetime as dt

                now = now or dt.datetime.now()
                age = (now - t.datetime_start).total_seconds() if t.datetime_start else 1e9
                row.worker = "unknown"
                if age > CLOSE_AFTER_S:
                    report.problems.append(Problem(
                        NO_WORKER, f"trial {t.number} RUNNING for {age:.0f}s with no worker recorded",
                        "queue it again (WAITING)" if not t.params else "FAIL it", trial=t.number))
                else:
                    live = True
            elif t_host != host:
                row.worker = f"other host ({t_host})"
                live = True  # RDB heartbeats decide there
            elif _alive(pid):
                row.worker = "alive"
                live = True
            else:
                row.worker = "dead"
                report.problems.append(Problem(
                    DEAD_TRIAL, f"trial {t.number} RUNNING but its worker (pid {pid}) is gone",
                    "FAIL it, close its run FAILED, queue a retry (resumes from its checkpoint)",
                    trial=t.number))
        if s == "COMPLETE" and client is not None and not any(
                rid in runs for rid in ids):
            report.problems.append(Problem(
                MISSING_RUN, f"trial {t.number} COMPLETE but has no MLflow run in {mask(uri)}",
                "", trial=t.number))
            row.note = "no MLflow run"
        if s == "FAIL":
            row.note = str(t.user_attrs.get("fail_reason", ""))[:200]
        report.trials.append(row)

    by_number = {t.number: t for t in trials}
    for rid, r in runs.items():
        trial = known_runs.get(rid)
        if trial is None:
            tag = r.data.tags.get("ablate.trial")
            owner = by_number.get(int(tag)) if tag and tag.isdigit() else None
            role = r.data.tags.get("ablate.role")
            if r.info.status == "RUNNING" and _running_live(owner, host):
                continue  # just created: its live trial records it in a moment
            if role != "dense_parent" and r.data.tags.get("ablate.kind") != "study":
                if r.info.status in ("FAILED", "KILLED"):  # a crashed attempt: no result lost
                    report.notes.append(f"run {rid} ({r.info.run_name}, {r.info.status}) belongs "
                                        "to no trial (an attempt that died before its trial "
                                        "recorded it)")
                    continue
                report.problems.append(Problem(
                    ORPHAN_RUN, f"run {rid} ({r.info.run_name}, {r.info.status}) belongs to no trial"
                    + (f" (tag ablate.trial={tag})" if tag else ""),
                    "close it FAILED" if r.info.status == "RUNNING" else "", run_id=rid))
                continue
            if r.info.status == "RUNNING" and not live:  # a dense parent with nothing running
                report.problems.append(Problem(
                    STALE_RUN, f"run {rid} ({r.info.run_name}) RUNNING with no live worker",
                    "close it FAILED", run_id=rid))
            continue
        if r.info.status != "RUNNING":
            continue
        if trial.state.name == "RUNNING" and _running_live(trial, host):
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

    report.problems += _finished_runs_of_failed_trials(trials, runs, known_runs)
    report.problems += _missing_objectives(opt, trials, runs, parent_run)
    report.problems += _duplicate_runs(runs)
    if report.parent_status == "RUNNING" and not live:
        sweeps = _sweep_processes()
        if sweeps:
            report.notes.append(f"parent run RUNNING: `ablate sweep` alive on this host (pid "
                                f"{', '.join(map(str, sweeps))})")
        else:
            report.problems.append(Problem(
                STALE_PARENT, f"parent run {parent} RUNNING with no trial or sweep running",
                "close it KILLED", run_id=parent))
    return report


def _running_live(trial, host: str) -> bool:
    """A RUNNING trial that may still be training (its worker alive, or on another host)."""
    from ablate.sweep.runner import _alive

    if trial is None or trial.state.name != "RUNNING":
        return False
    t_host, pid = trial.user_attrs.get("host"), trial.user_attrs.get("pid")
    if t_host is None or pid is None:
        return True  # starting: give it the benefit of the doubt (see NO_WORKER)
    return t_host != host or _alive(pid)


def _run_ids(trial) -> list[str]:
    """The MLflow runs a trial records (one per seed; the first also on its own)."""
    ids = list(trial.user_attrs.get("mlflow_run_ids") or [])
    first = trial.user_attrs.get("mlflow_run_id")
    if first and first not in ids:
        ids.insert(0, first)
    return ids


def _finished_runs_of_failed_trials(trials, runs: dict[str, Any], known_runs) -> list[Problem]:
    """Runs FINISHED (a result, to MLflow's UI and to anyone comparing there) whose trial
    FAILED. A seed that finished before another seed of its trial failed is a result: the
    retry of the point that carries it (`repeats_done`) counts it, so it is not one."""
    carried = {done.get("run_id") for t in trials if t.state.name != "FAIL"
               for done in (t.user_attrs.get("repeats_done") or {}).values() if "metrics" in done}
    out = []
    for rid, r in runs.items():
        trial = known_runs.get(rid)
        if trial is None or trial.state.name != "FAIL" or r.info.status != "FINISHED" or rid in carried:
            continue
        reason = str(trial.user_attrs.get("fail_reason") or "no reason recorded")
        out.append(Problem(
            FINISHED_RUN_FAILED_TRIAL, f"run {rid} ({r.info.run_name}) FINISHED but trial "
            f"{trial.number} FAILED ({reason[:120]})", "close it FAILED with the trial's reason",
            trial=trial.number, run_id=rid))
    return out


def _objective_metrics(opt, trial, parent_run) -> list[str]:
    """The metrics a trial was optimising: its revision's definition on the study, else the
    parent run's `objectives` param (`metric:direction,...`); [] when neither says."""
    revisions = {r.get("revision"): r for r in opt.user_attrs.get("revisions") or []}
    rev = revisions.get(int(trial.user_attrs.get("revision", 1)))
    named = (rev or {}).get("definition", {}).get("objectives")
    if named is None and parent_run is not None:
        named = [o for o in parent_run.data.params.get("objectives", "").split(",") if o]
    return [o.rsplit(":", 1)[0] for o in named or []]


def _missing_objectives(opt, trials, runs: dict[str, Any], parent_run) -> list[Problem]:
    """COMPLETE trials whose value is missing or not finite, or whose FINISHED runs lack the
    objective metric: a number in the study that nothing in MLflow backs."""
    import math

    out = []
    for t in trials:
        if t.state.name != "COMPLETE":
            continue
        if not t.values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in t.values):
            out.append(Problem(MISSING_OBJECTIVE, f"trial {t.number} COMPLETE with objective "
                               f"value(s) {t.values}", "", trial=t.number))
        for metric in _objective_metrics(opt, t, parent_run):
            for rid in _run_ids(t):
                r = runs.get(rid)
                if r is None or r.info.status != "FINISHED":
                    continue  # a missing run is MISSING_RUN's
                value = r.data.metrics.get(metric)
                if value is None or not math.isfinite(value):
                    out.append(Problem(MISSING_OBJECTIVE, f"trial {t.number} COMPLETE but its run "
                                       f"{rid} has {metric} = {value} in MLflow", "",
                                       trial=t.number, run_id=rid))
    return out


def _duplicate_runs(runs: dict[str, Any]) -> list[Problem]:
    """FINISHED trial runs of one configuration and seed (every param but RUN_IDENTITY's, in
    one revision of the study): whatever pools them counts one sample twice."""
    groups: dict[tuple, list] = {}
    for r in runs.values():
        tags = r.data.tags
        if (r.info.status != "FINISHED" or "ablate.trial" not in tags or "trainer.seed" not in r.data.params
                or tags.get("ablate.state") == "PRUNED"):
            continue  # a run that trained something, and whose result counts
        config = tuple(sorted((k, v) for k, v in r.data.params.items() if not k.startswith(RUN_IDENTITY)))
        groups.setdefault((tags.get("ablate.revision", "1"), config), []).append(r)
    out = []
    for same in groups.values():
        if len(same) < 2:
            continue
        same.sort(key=lambda r: r.info.start_time or 0)
        ids = ", ".join(f"{r.info.run_id} (trial {r.data.tags['ablate.trial']})" for r in same)
        out.append(Problem(
            DUPLICATE_RUN, f"runs {ids} trained the same configuration with seed "
            f"{same[0].data.params.get('trainer.seed', '?')}: {len(same)} runs of one sample", "",
            trial=int(same[-1].data.tags["ablate.trial"]), run_id=same[-1].info.run_id))
    return out


def diagnose(study: str, storage: str | None = None, tracking_uri: str | None = None) -> Report:
    """Check of one study (Optuna storage + MLflow store): it changes nothing, except cutting
    a journal's half-written records as every opening of a study does. Raises ConfigError
    (one line, exit 2) for an unknown study or an unreachable store."""
    opt, uri, client, cut = _open(study, storage, tracking_uri)
    report = _diagnose(opt, uri, client, storage)
    if cut is not None:
        report.notes.append(f"repaired the journal on opening: {cut.summary()}")
    return report


# -- repairing ------------------------------------------------------------------------------
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

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        if self._running(run_id):
            self._client.set_tag(run_id, key, value)

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        if self._running(run_id):
            self._client.set_terminated(run_id, status=status)
            self._actions.append(f"run {run_id} -> {status}")


def _close(client, run_id: str, status: str, reason: str, actions: list[str]) -> None:
    r = client.get_run(run_id)
    if r.info.status != "RUNNING":
        return
    if status != "FINISHED":
        client.set_tag(run_id, "ablate.fail_reason", reason)
    if status == "FAILED":
        client.set_tag(run_id, "ablate.state", "FAILED")
    client.set_terminated(run_id, status=status)
    actions.append(f"run {run_id} -> {status}")


def _fail_finished(client, run_id: str, reason: str, actions: list[str]) -> None:
    """A FINISHED run of a FAILED trial ends FAILED with the trial's reason (its end time,
    metrics and artifacts stay as they are)."""
    r = client.get_run(run_id)
    if r.info.status != "FINISHED":
        return
    client.set_tag(run_id, "ablate.fail_reason", reason[:5000])
    client.set_tag(run_id, "ablate.state", "FAILED")
    client.set_terminated(run_id, status="FAILED", end_time=r.info.end_time)
    actions.append(f"run {run_id} FINISHED -> FAILED (its trial failed: {reason[:80]})")


def fix(study: str, storage: str | None = None, tracking_uri: str | None = None) -> Report:
    """Repair what `diagnose` finds; -> the report after the repair (`actions`: what changed).
    Never deletes anything, never changes a COMPLETE trial; a FINISHED run changes only when
    its trial FAILED."""
    from optuna.trial import TrialState

    from ablate.sweep.runner import reap_dead_trials

    opt, uri, client, cut = _open(study, storage, tracking_uri)
    before = _diagnose(opt, uri, client, storage)
    actions: list[str] = [f"journal {cut.summary()}"] if cut is not None else []
    # a trial that died before it got parameters is put back in the queue as it is: failed with
    # no params it would break BruteForceSampler ("param_name mismatch") for every later ask
    for p in before.problems:
        if p.kind in (DEAD_TRIAL, NO_WORKER):
            t = opt.get_trials(deepcopy=False)[p.trial]
            if t.state == TrialState.RUNNING and not t.params:
                opt._storage.set_trial_state_values(t._trial_id, TrialState.WAITING)
                actions.append(f"trial {t.number} -> WAITING (died before it got parameters)")
            elif p.kind == NO_WORKER and t.state == TrialState.RUNNING:
                opt._storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                                 "no worker recorded (died while starting)")
                opt._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                actions.append(f"trial {t.number} -> FAIL (no worker recorded)")
    if any(p.kind == DEAD_TRIAL for p in before.problems):
        for n in reap_dead_trials(opt, _Guarded(client, actions)):
            actions.append(f"trial {n} -> FAIL (worker dead), queued again")
    if client is not None:
        # the trials' states after the reaping decide how their runs end
        after = _diagnose(opt, uri, client, storage)
        by_number = {t.number: t for t in opt.get_trials(deepcopy=False)}
        for p in after.problems:
            if p.kind in (STALE_RUN, ORPHAN_RUN) and p.run_id and p.fix:
                trial = by_number.get(p.trial) if p.trial is not None else None
                state = trial.state.name if trial is not None else "FAIL"
                status = RUN_STATUS_FOR.get(state, "FAILED")
                _close(client, p.run_id, status, f"closed by ablate doctor (trial {state})", actions)
            elif p.kind == FINISHED_RUN_FAILED_TRIAL:
                reason = by_number[p.trial].user_attrs.get("fail_reason") or "trial failed"
                _fail_finished(client, p.run_id, str(reason), actions)
        after = _diagnose(opt, uri, client, storage)
        if any(p.kind == STALE_PARENT for p in after.problems):
            _close(client, after.parent_run_id, "KILLED", "closed by ablate doctor", actions)
    report = _diagnose(opt, uri, client, storage)
    report.actions = actions
    return report


# -- printing -------------------------------------------------------------------------------
def render(report: Report, console=None) -> None:
    """Rich tables: the trials (state, worker, runs), then the problems and what was done."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    states = "  ".join(f"{k} {v}" for k, v in sorted(report.states.items())) or "no trials"
    console.print(f"study [bold]{report.study}[/]  ({states})")
    console.print(f"  Optuna: {report.storage}\n  MLflow: {report.tracking_uri}  parent run "
                  f"{report.parent_run_id or '-'} {report.parent_status or ''}")
    table = Table(show_lines=False)
    for col in ("trial", "state", "worker", "MLflow runs", "params", "note"):
        table.add_column(col)
    colour = {"COMPLETE": "green", "FAIL": "red", "RUNNING": "yellow", "PRUNED": "cyan"}
    for t in report.trials:
        runs = ", ".join(f"{rid[:8]} {st}" for rid, st in t.run_status.items()) or "-"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in t.params.items())
        worker = t.worker + (f" pid {t.pid}" if t.worker in ("alive", "dead") else "")
        table.add_row(str(t.number), f"[{colour.get(t.state, 'white')}]{t.state}[/]", worker,
                      runs, params[:60], escape(t.note))
    if report.trials:
        console.print(table)
    for note in report.notes:
        console.print(f"  note: {note}")
    for a in report.actions:
        console.print(f"  fixed: {a}")
    if report.ok:
        console.print("[green]consistent[/]: Optuna and MLflow agree"
                      + (" (after the fixes above)" if report.actions else ""))
        return
    probs = Table(title="problems")
    for col in ("kind", "detail", "--fix does"):
        # a kind is a name to search for, a run id one to copy: neither is cut
        probs.add_column(col, no_wrap=col == "kind", overflow="fold")
    for p in report.problems:
        probs.add_row(p.kind, escape(p.detail), p.fix or "nothing (reported only)")
    console.print(probs)
    fixable = any(p.fix for p in report.problems)
    console.print(f"[red]{len(report.problems)} problem(s)[/]"
                  + ("; run again with --fix to repair" if fixable and not report.actions else ""))
