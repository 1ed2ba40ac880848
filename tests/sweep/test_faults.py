"""SIGKILL a worker in the middle of a trial: the study still finishes its budget, the killed
trial is retried and resumes from its checkpoint, and no MLflow run is left RUNNING."""

import os
import signal
import subprocess
import sys
import time

import optuna
import yaml

from ablate.sweep.study import make_storage
from tests.mlflow_helpers import all_runs

SLOWER = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64",
          "data.max_docs=30", "data.block_size=32", "data.batch_size=4", "trainer.max_steps=120",
          "trainer.val_every=10", "trainer.val_batches=1", "trainer.log_every=10"]


def _study(name):
    return optuna.load_study(study_name=name, storage=make_storage(None, name))


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
