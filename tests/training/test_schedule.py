"""Several budgets from one run: the wsd schedule, and cooldown branches that measure what a
run of each budget's length measures without touching the main trajectory."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.config.load import load_config
from ablate.errors import ConfigError
from ablate.training.run import train
from ablate.training.schedule import lr_multiplier, warmup_cosine
from tests.conftest import TINY
from tests.mlflow_helpers import all_runs, store

# 24 steps, warmup 2, cooldown a quarter: the 12-step budget branches at step 9
WSD = [*TINY, "optim.schedule=wsd", "optim.warmup_steps=2", "optim.decay_fraction=0.25",
       "trainer.max_steps=24", "trainer.val_every=4", "model.ffn=moe", "model.moe.n_experts=4"]


def _optim(*extra: str):
    return load_config(overrides=[*TINY, "optim.warmup_steps=2", *extra]).optim


def test_cosine_is_the_cosine_it_always_was():
    o = _optim("optim.schedule=cosine")
    for s in range(30):
        assert lr_multiplier(s, o, 30) == warmup_cosine(s, 2, 30, o.min_lr_ratio)


@pytest.mark.parametrize("shape", ["1-sqrt", "linear"])
def test_wsd_warms_up_holds_then_cools_down_to_the_minimum(shape):
    o = _optim("optim.schedule=wsd", "optim.decay_fraction=0.2", f"optim.decay_shape={shape}")
    n, d = 20, 4  # cooldown: round(0.2 * 20) steps
    lrs = [lr_multiplier(s, o, n) for s in range(n)]
    assert lrs[:2] == [0.5, 1.0] and lrs[2:n - d] == [1.0] * (n - d - 2)
    p = 0.25  # the first cooldown step
    assert lrs[n - d] == pytest.approx(1 - (1 - o.min_lr_ratio) * (math.sqrt(p) if shape == "1-sqrt"
                                                                  else p))
    assert lrs[-1] == pytest.approx(o.min_lr_ratio)
    assert all(a > b for a, b in zip(lrs[n - d - 1:], lrs[n - d:]))  # falls every step
    # the stable phase does not depend on the run's length: every budget shares it
    assert [lr_multiplier(s, o, 40) for s in range(n - d)] == lrs[:n - d]


def _budgets(home, run) -> dict[int, float]:
    hist = store(home).get_metric_history(run.info.run_id, "budget/val_loss")
    return {m.step: m.value for m in hist}


def test_a_branch_measures_what_a_run_of_its_length_measures(ablate_home, tmp_path):
    """Budget 12 of a 24-step run equals a 12-step run with the same seed (the same weights,
    bit for bit, at the branch's end); the 24-step budget is the run's own end; and the
    main trajectory is the same weights with and without branches."""
    with_branches = train(load_config(overrides=[*WSD, "trainer.budgets=[12]"]),
                          experiment="b", weights_out=str(tmp_path / "with.pt"))
    alone = train(load_config(overrides=WSD), experiment="b",
                  weights_out=str(tmp_path / "alone.pt"))
    short = train(load_config(overrides=[*WSD, "trainer.max_steps=12"]), experiment="b")
    runs = {r.info.run_id: r for r in all_runs(ablate_home)}
    budgets = _budgets(ablate_home, runs[with_branches.run_id])
    tokens = 4 * 32  # batch x block
    assert sorted(budgets) == [12 * tokens, 24 * tokens]
    assert budgets[12 * tokens] == pytest.approx(short.metrics["val/loss"], abs=1e-6)
    assert budgets[24 * tokens] == with_branches.metrics["val/loss"] == alone.metrics["val/loss"]
    a, b = torch.load(tmp_path / "with.pt"), torch.load(tmp_path / "alone.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a run without budgets logs what it always did
    assert not _budgets(ablate_home, runs[alone.run_id])
    assert "trainer.budgets" not in runs[alone.run_id].data.params
    assert not any((ablate_home / "checkpoints" / "runs").glob("*/budgets/*.ckpt"))


@pytest.mark.parametrize("extra, key", [
    (["trainer.budgets=[12,8]"], "trainer.budgets"),  # not increasing
    (["trainer.budgets=[30]"], "trainer.budgets"),  # beyond max_steps
    (["trainer.budgets=[3]"], "trainer.budgets"),  # cooldown 1 > stable phase 3 - 1 - 2
    (["optim.decay_fraction=0.5"], "trainer.max_steps"),  # cooldown 12 > stable 10
    (["optim.schedule=cosine", "optim.decay_fraction=0.2", "optim.decay_shape=linear"],
     "optim.decay_shape"),  # a wsd key with cosine
    (["optim.schedule=cosine", "optim.decay_fraction=0.2", "trainer.budgets=[12]"],
     "trainer.budgets"),
])
def test_bad_budgets_and_wsd_keys_stop_with_one_line(extra, key):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[*WSD, *extra])
    assert e.value.key == key


def _sweep(path, home, **env) -> int:
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ablate", "sweep", str(path),
                           "--plugin", "tests.crash_plugin"],
                          env={**os.environ, "ABLATE_HOME": str(home), **env},
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode


@pytest.mark.slow
def test_a_run_killed_inside_a_branch_resumes_it_bit_identically(tmp_path):
    """SIGKILL-like death (os._exit) at step 11 of the 12-step budget's cooldown: the re-run
    retries the trial, whose training had finished, resumes the branch from its own last
    checkpoint (step 10) and measures every budget as an uninterrupted run does."""
    import yaml

    base = dict(o.split("=", 1) for o in [*WSD, "trainer.val_every=2", "trainer.budgets=[12]"])
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"study": "b", "base": {k: yaml.safe_load(v)
                                                           for k, v in base.items()},
                                    "space": {"arm": {"moe": {"model.ffn": "moe"}}}}))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _sweep(path, whole) == 0
    crash = {"ABLATE_TEST_CRASH_AT": "11", "ABLATE_TEST_CRASH_RUN_STEPS": "12"}
    assert _sweep(path, killed, **crash) == 17  # died inside the branch
    assert _sweep(path, killed) == 0  # the same command again
    done = [r for r in all_runs(killed) if r.info.status == "FINISHED" and "ablate.trial" in
            r.data.tags]
    (ref,) = [r for r in all_runs(whole) if "ablate.trial" in r.data.tags]
    assert len(done) == 1 and "ablate.resumed_from" in done[0].data.tags
    assert _budgets(killed, done[0]) == _budgets(whole, ref)
    assert len(_budgets(whole, ref)) == 2
