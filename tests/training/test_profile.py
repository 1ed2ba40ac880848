"""trainer.profile: where a run's time went, from Lightning's SimpleProfiler, each hook
counted once in the category of the outermost hook that holds it."""

from __future__ import annotations

import json

import pytest

from ablate.config.load import load_config
from ablate.training.profile import StartupClock, breakdown, category, render
from ablate.training.run import train
from tests.conftest import TINY
from tests.mlflow_helpers import all_runs


@pytest.mark.parametrize("action, expected", [
    ("run_training_batch", "training steps"),
    ("[_TrainingEpochLoop].train_dataloader_next", "data"),
    ("[Strategy]SingleDeviceStrategy.validation_step", "validation"),
    ("[_EvaluationLoop].val_next", "validation"),
    ("[Callback]ModelCheckpoint{'monitor': None}.on_train_batch_end", "checkpoints"),
    ("save_checkpoint", "checkpoints"),
    ("[Callback]RouterHealth.on_before_optimizer_step", "router statistics"),
    ("[Callback]Throughput.on_train_batch_end", "logging and progress"),
    ("[LightningModule]LMModule.configure_optimizers", None),
])
def test_each_hook_lands_in_its_category(action, expected):
    assert category(action) == expected


def test_nested_hooks_are_counted_once():
    """A checkpoint callback's hook holds save_checkpoint, which holds every on_save_checkpoint;
    run_training_batch holds the gradient hooks (the router statistics' one is moved out)."""
    clock = StartupClock()
    clock.phases["fit"] = 10.0
    report = breakdown({
        "run_training_batch": [3.0, 3.0],
        "[Strategy]SingleDeviceStrategy.training_step": [1.0, 1.0],
        "[Strategy]SingleDeviceStrategy.backward": [1.0, 1.0],
        "[Callback]RouterHealth.on_before_optimizer_step": [0.5, 0.5],
        "[Callback]ModelCheckpoint{}.on_train_batch_end": [1.0],
        "save_checkpoint": [0.9],
        "[Callback]RunState.on_save_checkpoint": [0.1],
        "[_EvaluationLoop].val_next": [0.5],
        "[Strategy]SingleDeviceStrategy.validation_step": [1.0],
    }, clock)
    fit = report["fit"]
    assert fit["training steps"] == pytest.approx(5.0)  # 6 minus the router's 1
    assert fit["router statistics"] == pytest.approx(1.0)
    assert fit["checkpoints"] == pytest.approx(1.0)
    assert fit["validation"] == pytest.approx(1.5)
    assert fit["other"] == pytest.approx(1.5)
    assert sum(fit.values()) == pytest.approx(10.0)
    assert report["steps"] == 2


def test_a_profiled_run_says_where_its_time_went(ablate_home):
    cfg = load_config(overrides=[*TINY, "model.ffn=moe", "trainer.profile=true"])
    result = train(cfg, experiment="profiled")
    report = result.extra["profile"]
    assert report["steps"] == cfg.trainer.max_steps
    fit = report["fit"]
    assert fit["training steps"] > 0 and fit["validation"] > 0 and fit["router statistics"] > 0
    assert sum(fit.values()) == pytest.approx(report["fit_s"])
    assert {"data", "model", "router probe", "MLflow run"} <= set(report["startup"])
    assert "training steps" in render(report)
    (run,) = all_runs(ablate_home)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{ablate_home / 'mlflow.db'}")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"profile.txt",
                                                                       "profile.json"}
    logged = json.loads(open(client.download_artifacts(run.info.run_id, "profile.json",
                                                       str(ablate_home))).read())
    assert logged["steps"] == cfg.trainer.max_steps


def test_an_unprofiled_run_has_no_profile(ablate_home):
    result = train(load_config(overrides=list(TINY)), experiment="plain")
    assert "profile" not in result.extra


def test_a_profile_with_budgets_says_their_branches_are_not_in_it(ablate_home):
    cfg = load_config(overrides=[*TINY, "trainer.max_steps=8", "trainer.val_every=4",
                                 "optim.schedule=wsd", "optim.warmup_steps=1",
                                 "trainer.budgets=[4]", "trainer.profile=true"])
    report = train(cfg, experiment="profiled-budgets").extra["profile"]
    assert report["steps"] == 8  # the main run's steps only
    assert "cooldown branches are not in it" in render(report)
