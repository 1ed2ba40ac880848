"""SIGKILL a worker in the middle of a trial: the study still finishes its budget, the killed
trial is retried and resumes from its checkpoint, and no MLflow run is left RUNNING."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from ablate.sweep.study import make_storage
from tests.mlflow_helpers import all_runs

SLOWER = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64",
          "data.max_docs=30", "data.block_size=32", "data.batch_size=4", "trainer.max_steps=120",
          "trainer.val_every=10", "trainer.val_batches=1", "trainer.log_every=10"]


def _study(name):
    return optuna.load_study(study_name=name, storage=make_storage(None, name))


@pytest.mark.slow
def test_sigkill_worker_mid_trial_retries_from_checkpoint(ablate_home, tmp_path):
    spec = {"study": "kill", "base": {"model": {"ffn": "moe"}},
            "space": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "sampler": {"name": "random", "seed": 0}, "n_trials": 4}
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "ABLATE_HOME": str(ablate_home)}
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "sweep", str(path), "--workers", "2",
                             *SLOWER], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        victim = _kill_a_worker_mid_trial(proc, ablate_home)
        assert victim is not None, "no trial reached a checkpoint to kill"
        proc.wait(timeout=600)
    finally:  # never leave workers behind, whatever happened
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _check_outcome(victim, ablate_home)


def _kill_a_worker_mid_trial(proc, ablate_home):
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if not (ablate_home / "optuna" / "kill.journal").exists():
            continue
        for t in _study("kill").get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            trial_dir = ablate_home / "checkpoints" / "kill" / f"trial-{t.number:05d}"
            if list(trial_dir.glob("*/last.ckpt")) and "pid" in t.user_attrs:
                victim = t
                os.kill(t.user_attrs["pid"], signal.SIGKILL)
                break
    return victim


def _check_outcome(victim, ablate_home):
    trials = _study("kill").get_trials()
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4  # the budget is met
    assert trials[victim.number].state.name == "FAIL"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == victim.params

    runs = all_runs(ablate_home)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_id = {r.info.run_id: r for r in runs}
    assert by_id[victim.user_attrs["mlflow_run_id"]].info.status == "FAILED"
    retry_run = by_id[retries[0].user_attrs["mlflow_run_id"]]
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["ablate.resumed_from"].endswith("last.ckpt")


def _running(name, home, n: int, timeout: float = 300, need=("pid", "host")):
    """Wait until `n` trials of study `name` are RUNNING with the attributes `need` recorded
    (by default their worker's pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if (home / "optuna" / f"{name}.journal").exists():
            running = [t for t in _study(name).get_trials(states=(optuna.trial.TrialState.RUNNING,))
                       if all(k in t.user_attrs for k in need)]
            if len(running) >= n:
                return running
    raise AssertionError(f"{n} trials of {name} never ran together")


def _children(pid: int) -> list[int]:
    kids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(ln for ln in status.read_text().splitlines() if ln.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if int(ppid.split()[1]) == pid:
            kids.append(int(status.parent.name))
    return kids


def _gone(pids, timeout: float) -> bool:
    from ablate.sweep.proc import alive

    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not any(alive(p) for p in pids)


@pytest.mark.slow
def test_workers_stop_within_seconds_when_their_sweep_is_killed(ablate_home, tmp_path):
    """SIGKILL of `ablate sweep --workers 2` alone: both workers end their trials (FAIL, "the
    sweep's parent process died", runs KILLED) and exit; the same command then completes the
    study without waiting on anything."""
    spec = {"study": "orphan", "space": {"optim.lr": [1e-3, 3e-3]}, "n_trials": 2}
    path = tmp_path / "orphan.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "ABLATE_HOME": str(ablate_home)}
    # trials of 400 steps: 120 once let one worker finish its trial before the other (which
    # tokenized the corpus first) had its run, and the two never ran together
    longer = [a for a in SLOWER if not a.startswith("trainer.max_steps")]
    longer.append("trainer.max_steps=400")
    cmd = [sys.executable, "-m", "ablate", "sweep", str(path), "--workers", "2", *longer]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        # their MLflow runs exist: the server that holds them dies with the sweep
        running = _running("orphan", ablate_home, 2, need=("pid", "host", "mlflow_run_id"))
        for server in _children(proc.pid):  # killed first, hard: not one more request lands
            if os.getsid(server) == server:  # the sweep's MLflow server leads its own session
                os.killpg(server, signal.SIGKILL)
        proc.kill()  # the parent only: its workers are another story
        proc.wait(timeout=30)
        logs = sorted((ablate_home / "logs" / "orphan").glob("worker-*.log"))
        assert _gone([t.user_attrs["pid"] for t in running], 60), \
            "a worker outlived its sweep: " + " | ".join(f.read_text()[-1500:] for f in logs)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    trials = _study("orphan").get_trials()
    assert all(t.state.name == "FAIL" and "parent process died" in t.user_attrs["fail_reason"]
               for t in trials), [(t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    stopped = [t.user_attrs["mlflow_run_id"] for t in trials]
    again = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sum(t.state.name == "COMPLETE" for t in _study("orphan").get_trials()) == 2
    # the stopped trials' runs could not be closed (the sweep's MLflow server died with it):
    # the next sweep closed them KILLED
    by_id = {r.info.run_id: r for r in all_runs(ablate_home)}
    assert [by_id[r].info.status for r in stopped] == ["KILLED", "KILLED"]
    assert not [r for r in by_id.values() if r.info.status == "RUNNING"]


def test_doctor_names_an_orphaned_worker_and_fix_stops_it(ablate_home, tmp_path):
    """A worker started without its sweep watching (its parent shell exits at once) trains
    on as an orphan: doctor reports `orphan_worker`, --fix stops it and queues its point."""
    from ablate.cli import main
    from ablate.sweep.doctor import ORPHAN_WORKER, diagnose

    spec = {"study": "lone", "space": {"optim.lr": [1e-3]}, "n_trials": 1}
    path = tmp_path / "lone.yaml"
    path.write_text(yaml.safe_dump(spec))
    slow = [a for a in SLOWER if not a.startswith("trainer.max_steps")] + ["trainer.max_steps=3000"]
    os.environ["ABLATE_HOME"] = str(ablate_home)
    from ablate.sweep.runner import Sweep
    from ablate.sweep.spec import load_sweep

    Sweep(load_sweep(path), slow).prepare()  # the study and its parent run, as a sweep makes
    worker = " ".join([sys.executable, "-m", "ablate", "sweep", str(path), *slow,
                       "--worker-index", "0", "--workers", "1"])
    env = {**os.environ, "ABLATE_HOME": str(ablate_home)}
    subprocess.run(["bash", "-c", f"{worker} >/dev/null 2>&1 &"], env=env, check=True)
    (t,) = _running("lone", ablate_home, 1)
    report = diagnose("lone")
    assert [p.kind for p in report.problems] == [ORPHAN_WORKER], report.problems
    assert main(["doctor", "--study", "lone", "--fix"]) in (0, 1)
    assert _gone([t.user_attrs["pid"]], 10)
    trials = _study("lone").get_trials()
    assert trials[t.number].state.name == "FAIL"
    from ablate.sweep.points import params_of

    assert any(u.state.name == "WAITING" and params_of(u) == t.params for u in trials)  # queued


def test_a_finished_training_whose_record_was_lost_is_never_trained_again(ablate_home, tmp_path,
                                                                          monkeypatch, tiny):
    """The study's store refuses the write after a seed finished training (read-only: EROFS):
    the trial fails for the machine; the re-run adopts the finished MLflow run of that point
    and seed instead of training it again (one FINISHED run per configuration and seed)."""
    import errno
    from collections import Counter

    from ablate.cli import main
    from ablate.sweep import objective

    spec = {"study": "lost", "space": {"optim.lr": [1e-3]}, "n_trials": 1}
    path = tmp_path / "lost.yaml"
    path.write_text(yaml.safe_dump(spec))
    real = objective.write

    def read_only(trial, **values):
        if "repeats_done" in values:
            raise OSError(errno.EROFS, "Read-only file system", str(ablate_home / "optuna"))
        real(trial, **values)

    with monkeypatch.context() as m:
        m.setattr(objective, "write", read_only)
        assert main(["sweep", str(path), *tiny]) == 1
    first = _study("lost").get_trials()  # (retried in the run, each attempt adopting the run)
    assert {t.state.name for t in first} == {"FAIL"}
    assert all(t.user_attrs["environmental"] for t in first)
    assert {t.user_attrs.get("attempt", 1) for t in first} == {1}  # no attempt spent
    assert main(["sweep", str(path), *tiny]) == 0
    trials = _study("lost").get_trials()
    assert trials[-1].state.name == "COMPLETE"
    finished = [r for r in all_runs(ablate_home)
                if r.info.status == "FINISHED" and "ablate.trial" in r.data.tags]
    assert Counter(r.data.params["trainer.seed"] for r in finished) == {"0": 1}  # never twice
    assert trials[-1].user_attrs["mlflow_run_ids"] == [finished[0].info.run_id]
