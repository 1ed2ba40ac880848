"""4 workers x 40 tiny trials on the default stores (journal file + SQLite behind the local
MLflow server): no "database is locked", no lost or duplicated trial, no orphan run."""

from __future__ import annotations

import collections

import optuna
import pytest
import yaml

from ablate.cli import main
from ablate.sweep.doctor import diagnose
from ablate.sweep.study import make_storage
from tests.mlflow_helpers import all_runs

N_TRIALS, N_WORKERS = 40, 4


@pytest.mark.slow
def test_four_workers_forty_trials_on_the_default_stores(ablate_home, tiny, tmp_path):
    spec = {"study": "crowd", "base": {"model": {"ffn": "moe"}},
            "space": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                      "model.moe.top_k": [1, 2]},
            "sampler": {"name": "tpe", "seed": 0}, "n_trials": N_TRIALS}
    path = tmp_path / "crowd.yaml"
    path.write_text(yaml.safe_dump(spec))
    fast = [o for o in tiny if not o.startswith(("trainer.max_steps", "trainer.val_every"))] + [
        "trainer.max_steps=2", "trainer.val_every=2", "trainer.val_batches=1"]
    assert main(["sweep", str(path), "--workers", str(N_WORKERS), *fast]) == 0

    logs = (sorted((ablate_home / "logs").glob("*/worker-*.log"))
            + [ablate_home / "mlflow-server.log"])
    assert len(logs) == N_WORKERS + 1 and all(p.is_file() for p in logs)
    locked = [p.name for p in logs if "database is locked" in p.read_text(errors="replace").lower()]
    assert not locked, f"'database is locked' in {locked}"

    study = optuna.load_study(study_name="crowd", storage=make_storage(None, "crowd"))
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(N_TRIALS))  # none lost, none extra
    assert all(t.state.name == "COMPLETE" for t in trials), (
        collections.Counter(t.state.name for t in trials))
    assert len({t.user_attrs["pid"] for t in trials}) == N_WORKERS  # every worker took trials

    runs = all_runs(ablate_home)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(children) == len(runs) - 1  # every run but the parent is one of its children
    per_trial = collections.Counter(r.data.tags["ablate.trial"] for r in children)
    assert per_trial == {str(t.number): 1 for t in trials}  # exactly one run per trial
    by_id = {r.info.run_id: r for r in children}
    for t in trials:  # ... and it is the run the trial points to, finished, with its metric
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED" and run.data.tags["ablate.trial"] == str(t.number)
        assert run.data.metrics["val/loss"] == pytest.approx(t.value)
    assert {r.info.run_id for r in runs if r.info.run_id != parent} == {
        t.user_attrs["mlflow_run_id"] for t in trials}  # no orphan run
    assert diagnose("crowd").ok
