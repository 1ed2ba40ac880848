"""Fair arms: `tune:` tunes a key per arm in a first stage of the study, then trains every
repeat of each arm at its chosen value; verdicts read the main stage only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from ablate.cli import main
from tests.conftest import TINY
from tests.mlflow_helpers import all_runs

RATES = [1.0e-4, 3.0e-3, 3.0e-2]
SWEEP = {
    "study": "fair",
    "space": {"arm": {"dense": {"model.ffn": "dense"},
                      "moe": {"model.ffn": "moe", "model.moe.n_experts": 4}}},
    "repeats": 2,
    "tune": {"space": {"optim.lr": RATES}, "fraction": 0.5, "seeds": [0]},
    "expect": [{"better": "moe", "than": "dense"}],
}


def _write(tmp_path, **changes) -> str:
    spec = {**SWEEP, **changes}
    path = tmp_path / "fair.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _study(home):
    import optuna

    from ablate.sweep.storages import make_storage

    os.environ["ABLATE_HOME"] = str(home)
    return optuna.load_study(study_name="fair", storage=make_storage(None, "fair", 1))


def test_each_arm_trains_at_its_own_best_rate(ablate_home, tmp_path, capsys):
    path = _write(tmp_path)
    assert main(["sweep", path, *TINY]) == 0
    trials = _study(ablate_home).get_trials()
    tune = [t for t in trials if t.user_attrs.get("stage") == "tune"]
    rest = [t for t in trials if t.user_attrs.get("stage") is None]
    assert len(tune) == 6 and len(rest) == 2  # 2 arms x 3 rates, then each arm once
    assert {t.state.name for t in trials} == {"COMPLETE"}
    for t in rest:
        mine = {u.params["optim.lr"]: u.values[0] for u in tune
                if u.params["arm"] == t.params["arm"]}
        assert t.params["optim.lr"] == min(mine, key=mine.get)  # the arm's best tuning value
        assert len(t.user_attrs["repeats_done"]) == 2  # both repeats, at that rate
    runs = [r for r in all_runs(ablate_home) if "ablate.trial" in r.data.tags]
    tuning = [r for r in runs if r.data.tags.get("ablate.stage") == "tune"]
    assert len(tuning) == 6 and all(r.data.params["trainer.max_steps"] == "3" for r in tuning)
    assert all("[tune optim.lr=" in r.data.params["arm"] for r in tuning)
    chosen = {t.params["arm"]: t.params["optim.lr"] for t in rest}
    for r in runs:
        if "ablate.stage" not in r.data.tags:  # the chosen rate is a param of the arm's runs
            assert float(r.data.params["optim.lr"]) == chosen[r.data.params["arm"]]
    capsys.readouterr()
    assert main(["compare", "--study", "fair", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {a["arm"]: a["tuned"]["optim.lr"] for a in out["arms"]} == chosen
    assert all(a["n"] == 2 for a in out["arms"])  # the main stage's runs only
    assert set(out["tuning"]["arms"]) == {"dense", "moe"}
    assert out["tuning"]["arms"]["dense"]["chosen"] == f"optim.lr={chosen['dense']:g}"
    assert out["expectations"][0]["n"] == 2  # verdicts read the main stage
    assert main(["compare", "--study", "fair"]) == 0
    text = capsys.readouterr().out
    assert "tuning stage" in text and "tuned" in text
    n = len(trials)
    assert main(["sweep", path, *TINY]) == 0  # a re-run trains nothing
    assert len(_study(ablate_home).get_trials()) == n


@pytest.mark.slow
def test_a_sweep_killed_between_the_stages_resumes_without_training_twice(tmp_path):
    path = _write(tmp_path)
    home = tmp_path / "home"
    env = {**os.environ, "ABLATE_HOME": str(home)}
    cmd = [sys.executable, "-m", "ablate", "sweep", path, *TINY, "--plugin", "tests.crash_plugin"]
    crash = {"ABLATE_TEST_CRASH_AT": "1", "ABLATE_TEST_CRASH_RUN_STEPS": "6"}  # main stage only
    first = subprocess.run(cmd, env={**env, **crash}, capture_output=True, timeout=600)
    assert first.returncode == 17  # died at the first step of the first main-stage trial
    trials = _study(home).get_trials()
    assert sum(t.user_attrs.get("stage") == "tune" and t.state.name == "COMPLETE"
               for t in trials) == 6
    again = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    finished = [r for r in all_runs(home) if r.info.status == "FINISHED"
                and "ablate.trial" in r.data.tags]
    samples = Counter((r.data.params["arm"], r.data.params["optim.lr"],
                       r.data.params["trainer.seed"]) for r in finished)
    assert len(samples) == 6 + 4 and set(samples.values()) == {1}  # each (point, seed) once


@pytest.mark.parametrize("tune, key", [
    ({"space": {"optim.lr": RATES}, "frations": 0.5}, "tune.frations"),  # unknown key
    ({"space": {"model.ffn": ["dense", "moe"]}}, "tune.space.model.ffn"),  # an arm's key
    ({"space": {"optim.lr": RATES}, "fraction": 1.5}, "tune.fraction"),
    ({"space": {"optim.lr": RATES}, "fraction": 0}, "tune.fraction"),
    ({"space": {"optim.lr": RATES}, "seeds": [7]}, "tune.seeds"),  # not a repeat's seed
    ({"space": {"optim.lrr": RATES}}, "tune.space.optim.lrr"),  # not a config key
])
def test_bad_tune_blocks_stop_before_anything_runs(tune, key, ablate_home, tmp_path, capsys):
    assert main(["sweep", _write(tmp_path, tune=tune), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {key}=") and "\n" not in err
    assert not ablate_home.exists()
