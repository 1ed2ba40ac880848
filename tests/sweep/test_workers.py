"""Many worker processes against one study on the default stores (journal + SQLite via a
local MLflow server): every trial exactly once, each with exactly one finished child run."""

import collections

import optuna
import pytest
import yaml

from ablate.cli import main
from ablate.errors import ConfigError
from ablate.sweep.study import make_storage
from ablate.sweep.workers import parse_gpus, plan_devices
from tests.mlflow_helpers import all_runs


@pytest.mark.slow
def test_three_workers_twelve_trials_nothing_lost_or_duplicated(ablate_home, tiny, tmp_path):
    spec = {"study": "par", "base": {"model": {"ffn": "moe"}},
            "space": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "sampler": {"name": "tpe", "seed": 0}, "n_trials": 12}
    path = tmp_path / "par.yaml"
    path.write_text(yaml.safe_dump(spec))
    fast = [o for o in tiny if not o.startswith("trainer.max_steps")] + ["trainer.max_steps=3"]
    assert main(["sweep", str(path), "--workers", "3", *fast]) == 0

    study = optuna.load_study(study_name="par", storage=make_storage(None, "par"))
    trials = study.get_trials()
    states = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert len(trials) == 12 and all(t.state.name == "COMPLETE" for t in trials), states
    assert len({t.user_attrs["pid"] for t in trials}) == 3  # three processes did the work
    children = [r for r in all_runs(ablate_home) if "mlflow.parentRunId" in r.data.tags]
    per_trial = collections.Counter(r.data.tags["ablate.trial"] for r in children)
    assert per_trial == {str(t.number): 1 for t in trials}
    for r in children:
        assert r.info.status == "FINISHED" and "val/loss" in r.data.metrics
        assert r.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]
    assert {r.data.tags["ablate.worker"] for r in children} == {"0", "1", "2"}


def test_device_plans():
    n, envs = plan_devices(None, parse_gpus("0,1,2,3"), 2)
    assert n == 2 and [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0,1", "2,3"]
    n, envs = plan_devices(2, [], 1)
    assert n == 2 and all(e["CUDA_VISIBLE_DEVICES"] == "" for e in envs)
    with pytest.raises(ConfigError):
        plan_devices(3, parse_gpus("0,1"), 1)
    with pytest.raises(ConfigError):
        parse_gpus("0,x")


def test_sqlite_storage_refused_for_workers(ablate_home, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"study": "s", "space": {"model.d_ff": [64]}}))
    rc = main(["sweep", str(path), "--workers", "2", "--storage", f"sqlite:///{tmp_path}/o.db"])
    assert rc == 2 and "SQLite" in capsys.readouterr().err
