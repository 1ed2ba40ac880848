"""DDP inside a trial on CPU: 2 gloo ranks under torchrun. Rank 0 owns the trial; the
pruning decision reaches both ranks; each trial is exactly one MLflow run."""

import os
import subprocess
import sys

import optuna
import pytest
import yaml

from ablate.sweep.study import make_storage
from tests.mlflow_helpers import all_runs


def _torchrun(spec, tmp_path, ablate_home, tiny, *extra, env=None):
    path = tmp_path / f"{spec['study']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "ABLATE_HOME": str(ablate_home), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
         str(_port()), "-m", "ablate", "sweep", str(path), "trainer.devices=2", *tiny, *extra],
        env=env, capture_output=True, text=True, timeout=600)


def _port():
    from ablate.tracking.server import free_port

    return free_port()


def test_ddp_trial_two_gloo_ranks(ablate_home, tiny, tmp_path):
    # grouped dispatch gives every expert weight a gradient and a hash router owns no weight:
    # DDP runs without find_unused_parameters, and would fail on a parameter left unused
    spec = {"study": "ddp", "base": {"model": {"ffn": "moe"}},
            "space": {"arm": {"sigmoid-k1": {"model.moe.router.name": "sigmoid",
                                             "model.moe.top_k": 1},
                              "hash-k2": {"model.moe.router.name": "hash", "model.moe.top_k": 2,
                                          "model.moe.aux.switch": 0.0, "model.moe.aux.z": 0.0}}},
            "sampler": {"name": "bruteforce"}, "n_trials": 2}
    proc = _torchrun(spec, tmp_path, ablate_home, tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="ddp", storage=make_storage(None, "ddp"))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    children = [r for r in all_runs(ablate_home) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2  # rank 1 logged nothing of its own
    assert all(r.data.params["trainer.devices"] == "2" and "val/loss" in r.data.metrics
               for r in children)


def test_pruning_decision_reaches_every_rank(ablate_home, tiny, tmp_path):
    spec = {"study": "ddp-prune", "base": {"model": {"ffn": "moe"}},
            "space": {"optim.lr": [0.003]}, "sampler": {"name": "bruteforce"},
            "pruner": {"name": "threshold", "options": {"upper": 0.0}}, "n_trials": 1}
    proc = _torchrun(spec, tmp_path, ablate_home, tiny)  # would hang if rank 1 kept training
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = optuna.load_study(study_name="ddp-prune",
                                 storage=make_storage(None, "ddp-prune")).trials
    assert trial.state.name == "PRUNED"
    assert list(trial.intermediate_values) == [3]  # reported at global_step 3, then stopped


def test_expert_parallel_training_end_to_end(ablate_home, tiny):
    env = {**os.environ, "ABLATE_HOME": str(ablate_home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
         str(_port()), "-m", "ablate", "train", "model.ffn=moe", "model.moe.expert_parallel=true",
         "trainer.devices=2", *tiny], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = all_runs(ablate_home)
    assert run.info.status == "FINISHED" and run.data.params["model.moe.expert_parallel"] == "True"
    assert "val/loss" in run.data.metrics and run.data.metrics["moe/dead_experts"] >= 0


@pytest.mark.slow
def test_expert_parallel_trial_killed_then_resumed_ends_as_if_never_stopped(tmp_path, tiny,
                                                                            monkeypatch):
    """2 ranks x 2 experts each. Every process dies at step 4 (checkpoint at step 3); the
    re-run fails the dead trial, queues it again and resumes it from the checkpoint, which
    holds all 4 experts and their Adam moments: each rank gets its own shard back, and the
    final metrics equal those of a run never interrupted, to the last bit."""
    spec = {"study": "ep", "base": {"model": {"ffn": "moe", "moe": {"expert_parallel": True}}},
            "space": {"optim.lr": [0.01]}, "sampler": {"name": "bruteforce"}, "n_trials": 1}
    straight_home, home = tmp_path / "straight", tmp_path / "crashed"
    assert _torchrun(spec, tmp_path, straight_home, tiny).returncode == 0

    crash = _torchrun(spec, tmp_path, home, tiny, "--plugin", "tests.crash_plugin",
                      env={"ABLATE_TEST_CRASH_AT": "4"})
    assert crash.returncode != 0
    assert list((home / "checkpoints" / "ep").glob("trial-00000/seed-*/last.ckpt"))
    proc = _torchrun(spec, tmp_path, home, tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]

    monkeypatch.setenv("ABLATE_HOME", str(home))
    study = optuna.load_study(study_name="ep", storage=make_storage(None, "ep"))
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    (straight,) = [r for r in all_runs(straight_home) if "mlflow.parentRunId" in r.data.tags]
    (resumed,) = [r for r in all_runs(home) if "ablate.resumed_from" in r.data.tags]
    assert resumed.info.status == "FINISHED"
    for key in ("val/loss", "train/loss"):
        assert resumed.data.metrics[key] == straight.data.metrics[key], key
