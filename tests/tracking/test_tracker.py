"""RunTracker.end and its logger's finalize: a run stopped while its tracking server is dead
does not wait on it, and the next sweep closes what it left RUNNING."""

from __future__ import annotations

import time

import optuna
from mlflow.tracking import MlflowClient

from ablate.sweep.reaper import close_interrupted_runs
from ablate.sweep.record import write
from ablate.tracking.server import local_server
from ablate.tracking.tracker import RunTracker


def test_a_stopped_run_does_not_wait_on_a_dead_server_and_the_next_sweep_closes_it(
        ablate_home, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with local_server(db) as url:
        tracker = RunTracker(url, "exp")
        run_id = tracker.start("r", {}, None, {"a": 1}, "a: 1\n")
        tracker.logger.log_metrics({"train/loss": 1.0}, step=1)
    # the server is gone (MLflow's client alone would retry each call for ~4 minutes)
    t0 = time.monotonic()
    tracker.logger.finalize("failed")  # what Lightning calls first when a stop ends the fit
    tracker.end("KILLED", "KILLED")
    assert time.monotonic() - t0 < 15
    err = capsys.readouterr().err
    assert f"run {run_id} stays RUNNING" in err and "does not answer" in err
    store = MlflowClient(db)
    assert store.get_run(run_id).info.status == "RUNNING"

    study = optuna.create_study()
    for reason in ("interrupted: the sweep's parent process died", "a NaN loss"):
        trial = study.ask()
        write(trial, fail_reason=reason, run_ids=[run_id])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert close_interrupted_runs(study, store) == [run_id]  # the NaN trial's run: not its
    run = store.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["ablate.fail_reason"].startswith("interrupted")
    assert close_interrupted_runs(study, store) == []  # closed once

