"""The doctor's diagnosis on hand-made inputs: real Optuna FrozenTrials and MLflow Runs, no
store, no process. Which workers live is what the snapshot says, never what /proc says;
what the snapshot reads from /proc is tested on real processes at the end."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
from optuna.trial import TrialState

from ablate.sweep.doctor import (
    DEAD_TRIAL,
    DUPLICATE_RUN,
    FINISHED_RUN_FAILED_TRIAL,
    MISSING_OBJECTIVE,
    MISSING_RUN,
    NO_WORKER,
    ORPHAN_RUN,
    STALE_PARENT,
    STALE_RUN,
    Snapshot,
    diagnose_snapshot,
)
from ablate.sweep.doctor.read import sweep_processes
from ablate.sweep.record import Revision

HOST, NOW = "here", dt.datetime(2025, 1, 1, 12, 0, 0)
LR = optuna.distributions.CategoricalDistribution([0.1, 0.2])


def trial(number: int, state: str, lr: float | None = 0.1, value: float | None = None,
          age_s: float = 3600, **attrs):
    t = optuna.trial.create_trial(
        state=TrialState[state], value=value if state == "COMPLETE" else None,
        params={"optim.lr": lr} if lr is not None else {},
        distributions={"optim.lr": LR} if lr is not None else {}, user_attrs=attrs)
    t.number = number
    t.datetime_start = NOW - dt.timedelta(seconds=age_s)
    return t


def run(rid: str, status: str, trial: int | None = None, metrics: dict | None = None,
        params: dict | None = None, start: int = 0, **tags) -> Run:
    tags = {**({"ablate.trial": str(trial)} if trial is not None else {}), **tags}
    return Run(RunInfo(rid, "0", "me", status, start, None, "active", run_name=f"r-{rid}"),
               RunData(metrics=[Metric(k, v, 0, 1) for k, v in (metrics or {}).items()],
                       params=[Param(k, str(v)) for k, v in (params or {}).items()],
                       tags=[RunTag(k, v) for k, v in tags.items()]))


def snap(trials, runs, parent: Run | None = None, **kw) -> Snapshot:
    runs = {r.info.run_id: r for r in runs}
    return Snapshot(study="s", storage="s.journal", tracking_uri="sqlite:///m.db", trials=trials,
                    runs=runs, parent_run_id=parent.info.run_id if parent else None,
                    parent_run=parent, host=HOST, now=NOW, **kw)


def kinds(report) -> list[str]:
    return [p.kind for p in report.problems]


def test_a_finished_study_is_consistent():
    t = trial(0, "COMPLETE", value=1.0, mlflow_run_id="a")
    report = diagnose_snapshot(snap([t], [run("a", "FINISHED", 0, {"val/loss": 1.0})],
                                    revisions=[Revision(1, "", {
                                        "objectives": ["val/loss:minimize"]})]))
    assert report.ok and report.exit_code == 0 and report.states == {"COMPLETE": 1}
    assert report.trials[0].run_status == {"a": "FINISHED"} and report.runs == {"a": "FINISHED"}


@pytest.mark.parametrize("alive", [True, False])
def test_a_running_trial_is_judged_by_the_liveness_given(alive):
    """The pid is this test's own (alive on this machine): only `live_pids` decides."""
    pid = os.getpid()
    t = trial(0, "RUNNING", host=HOST, pid=pid, mlflow_run_id="a")
    parent = run("p", "RUNNING", **{"ablate.kind": "study"})
    report = diagnose_snapshot(snap([t], [run("a", "RUNNING", 0)], parent,
                                    live_pids={pid} if alive else set()))
    assert report.parent_status == "RUNNING"
    if alive:
        assert report.ok and report.trials[0].worker == "alive"
        return
    assert report.trials[0].worker == "dead"
    assert kinds(report) == [DEAD_TRIAL, STALE_RUN, STALE_PARENT]
    stale = report.problems[1]
    assert stale.run_id == "a" and stale.trial == 0 and "worker is gone" in stale.detail
    assert report.problems[2].run_id == "p" and report.problems[2].fix == "close it KILLED"


def test_a_live_sweep_keeps_the_parent_and_other_hosts_are_theirs():
    parent = run("p", "RUNNING")
    dead = trial(0, "RUNNING", host=HOST, pid=123)
    report = diagnose_snapshot(snap([dead], [], parent, sweep_pids=[77]))
    assert kinds(report) == [DEAD_TRIAL] and "pid 77" in report.notes[0]
    elsewhere = trial(0, "RUNNING", host="there", pid=123, mlflow_run_id="a")
    report = diagnose_snapshot(snap([elsewhere], [run("a", "RUNNING", 0)], parent))
    assert report.ok and report.trials[0].worker == "other host (there)"


@pytest.mark.parametrize("lr, fix", [(None, "queue it again (WAITING)"), (0.1, "FAIL it")])
def test_no_worker_recorded_is_a_crash_after_a_minute(lr, fix):
    old = trial(0, "RUNNING", lr=lr, age_s=120)
    (p,) = diagnose_snapshot(snap([old], [])).problems
    assert (p.kind, p.fix, p.trial) == (NO_WORKER, fix, 0) and "120s" in p.detail
    young = trial(0, "RUNNING", lr=lr, age_s=10)  # still starting: live, the parent with it
    report = diagnose_snapshot(snap([young], [], run("p", "RUNNING")))
    assert report.ok and report.trials[0].worker == "unknown"


def test_runs_that_no_trial_knows():
    t = trial(0, "COMPLETE", value=1.0, mlflow_run_id="a")
    runs = [run("a", "RUNNING", 0),  # its trial ended: close it as the trial ended
            run("o1", "RUNNING", 9), run("o2", "FINISHED"), run("o3", "FAILED", 8),
            run("d", "RUNNING", **{"ablate.role": "dense_parent"})]
    report = diagnose_snapshot(snap([t], runs))
    found = {p.run_id: p for p in report.problems}
    assert kinds(report) == [STALE_RUN, ORPHAN_RUN, ORPHAN_RUN, STALE_RUN]
    assert found["a"].fix == "close it FINISHED" and "is COMPLETE" in found["a"].detail
    assert found["o1"].fix == "close it FAILED" and "ablate.trial=9" in found["o1"].detail
    assert found["o2"].fix == ""  # a FINISHED run is a result: reported only
    assert "o3" not in found and "belongs to no trial" in report.notes[0]
    assert found["d"].kind == STALE_RUN and found["d"].fix == "close it FAILED"


def test_a_run_just_created_for_a_live_trial_is_not_an_orphan():
    t = trial(0, "RUNNING", host=HOST, pid=5)
    report = diagnose_snapshot(snap([t], [run("new", "RUNNING", 0)], live_pids={5}))
    assert report.ok


def test_missing_run_needs_a_store():
    t = trial(0, "COMPLETE", value=1.0, mlflow_run_id="gone")
    report = diagnose_snapshot(snap([t], []))
    assert kinds(report) == [MISSING_RUN] and report.trials[0].run_status == {"gone": "missing"}
    report = diagnose_snapshot(snap([t], [], has_store=False))
    assert report.ok and "no MLflow store" in report.notes[0]


def test_runs_that_pass_for_results():
    cfg = {"optim.lr": 0.1, "trainer.seed": 1, "tracking.run_name": "x"}
    failed = trial(0, "FAIL", mlflow_run_ids=["f"], fail_reason="boom")
    carried = trial(1, "FAIL", mlflow_run_ids=["c"])  # its finished seed a retry carries
    retry = trial(2, "COMPLETE", value=1.0, mlflow_run_ids=["r"],
                  repeats_done={"1": {"run_id": "c", "metrics": {"val/loss": 1.0}}})
    blind = trial(3, "COMPLETE", value=float("inf"), mlflow_run_ids=["b"])
    runs = [run("f", "FINISHED", 0), run("c", "FINISHED", 1),
            run("r", "FINISHED", 2, {"val/loss": 1.0}, cfg, start=1),
            run("b", "FINISHED", 3, {"train/loss": 1.0},
                {**cfg, "tracking.run_name": "y"}, start=2)]
    report = diagnose_snapshot(snap([failed, carried, retry, blind], runs,
                                    run("p", "FINISHED",
                                        params={"objectives": "val/loss:minimize"})))
    assert kinds(report) == [FINISHED_RUN_FAILED_TRIAL, MISSING_OBJECTIVE, MISSING_OBJECTIVE,
                             DUPLICATE_RUN]
    first, value, metric, dup = report.problems
    assert first.run_id == "f" and "boom" in first.detail and first.fix
    assert value.trial == 3 and value.run_id is None and "inf" in value.detail
    assert metric.run_id == "b" and "val/loss = None" in metric.detail
    assert (dup.trial, dup.run_id) == (3, "b") and "r (trial 2)" in dup.detail and not dup.fix


def test_the_revision_names_the_objective_before_the_parent_run():
    t = trial(0, "COMPLETE", value=1.0, mlflow_run_id="a", revision=2)
    runs = [run("a", "FINISHED", 0, {"val/loss": 1.0})]
    revisions = [Revision(2, "", {"objectives": ["val/ppl:minimize"]})]
    parent = run("p", "FINISHED", params={"objectives": "val/loss:minimize"})
    report = diagnose_snapshot(snap([t], runs, parent, revisions=revisions))
    assert kinds(report) == [MISSING_OBJECTIVE] and "val/ppl" in report.problems[0].detail
    assert diagnose_snapshot(snap([t], runs, parent)).ok


def test_live_sweeps_are_found_by_their_command_line_and_home(tmp_path, monkeypatch):
    """`ablate sweep` processes of this ABLATE_HOME (their environment, relative to their
    working directory) keep a parent run RUNNING; another home's do not."""
    monkeypatch.setenv("ABLATE_HOME", str(tmp_path / "home"))
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "ablate", "sweep"]
    ours = subprocess.Popen(argv, cwd=tmp_path, env={**os.environ, "ABLATE_HOME": "home"})
    theirs = subprocess.Popen(argv, env={**os.environ, "ABLATE_HOME": str(tmp_path / "other")})
    idle = subprocess.Popen(argv[:3], cwd=tmp_path, env={**os.environ, "ABLATE_HOME": "home"})
    try:
        deadline = time.monotonic() + 10
        while ours.pid not in sweep_processes() and time.monotonic() < deadline:
            time.sleep(0.05)  # until the child has exec'd its command line
        found = sweep_processes()
        assert ours.pid in found and theirs.pid not in found and idle.pid not in found
    finally:
        for p in (ours, theirs, idle):
            p.kill()
            p.wait()
    assert ours.pid not in sweep_processes()
