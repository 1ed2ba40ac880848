"""Every number in a study is real: each point once, each (configuration, seed) trained
once, failures retried or failed for good with their reason, and a study that is one
experiment (a changed sweep is refused, or recorded as a new revision).

Real sweeps of the tiny model (tests/conftest.py) through the real CLI and stores.
"""

from __future__ import annotations

import json
from collections import Counter

import optuna
import yaml

from ablate.cli import main
from ablate.reporting.collect import load_study
from ablate.reporting.compare import compare
from ablate.sweep.study import make_storage
from tests.mlflow_helpers import all_runs

ARMS = {"dense": {"model.ffn": "dense"},
        "moe-E4": {"model.ffn": "moe", "model.moe.n_experts": 4, "model.moe.top_k": 1}}


def _write(tmp_path, name: str, spec: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _study(name: str):
    return optuna.load_study(study_name=name, storage=make_storage(None, name))


def _children(home):
    return [r for r in all_runs(home) if "mlflow.parentRunId" in r.data.tags]


def test_a_categorical_space_is_enumerated_not_sampled(ablate_home, tiny, tmp_path):
    """No sampler given: the 2 arms are trained once each, although n_trials asks for 4
    (TPE used to train `dense` three times with one seed: three equal numbers, n=3, ± 0)."""
    path = _write(tmp_path, "enum", {"study": "enum", "space": {"arm": ARMS}, "n_trials": 4})
    assert main(["sweep", path, *tiny]) == 0
    trials = _study("enum").trials
    assert sorted(t.params["arm"] for t in trials) == ["dense", "moe-E4"]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert main(["sweep", path, *tiny]) == 0  # a re-run: nothing left, nothing trained
    assert len(_study("enum").trials) == 2 and len(_children(ablate_home)) == 2


def test_a_sampler_never_trains_a_point_twice(ablate_home, tiny, tmp_path):
    path = _write(tmp_path, "rnd", {"study": "rnd", "space": {"arm": ARMS}, "n_trials": 4,
                                    "sampler": {"name": "random", "seed": 0}})
    assert main(["sweep", path, *tiny]) == 0
    trials = _study("rnd").trials
    points = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert sorted(t.params["arm"] for t in points) == ["dense", "moe-E4"]
    for t in trials:  # the sampler's repeats are bookkeeping: told FAIL, never trained
        if "duplicate_of" in t.user_attrs:
            assert t.state.name == "FAIL" and "mlflow_run_id" not in t.user_attrs
    assert len(_children(ablate_home)) == 2


def test_transient_failures_are_retried_and_no_seed_is_trained_twice(ablate_home, tiny, tmp_path,
                                                                     monkeypatch):
    """Every 2nd training fails at step 2 with an OSError: a point whose seed 1 failed is
    retried, its finished seed 0 is carried over (not trained again), and every point ends
    COMPLETE with exactly one finished run per seed. n_trials counts points, not attempts."""
    monkeypatch.setenv("ABLATE_TEST_FLAKY_EVERY", "2")
    path = _write(tmp_path, "flaky",
                  {"study": "flaky", "space": {"optim.lr": [0.002, 0.004, 0.006]},
                   "repeats": 2, "n_trials": 3})
    assert main(["sweep", path, "--plugin", "tests.flaky_plugin", *tiny]) == 0
    trials = _study("flaky").trials
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["optim.lr"] for t in done) == [0.002, 0.004, 0.006]
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all("flaky" in t.user_attrs["fail_reason"] for t in failed)
    finished = Counter((r.data.params["optim.lr"], r.data.params["trainer.seed"])
                       for r in _children(ablate_home) if r.info.status == "FINISHED")
    assert finished == Counter({(lr, s): 1 for lr in ("0.002", "0.004", "0.006")
                                for s in ("0", "1")})
    c = compare(load_study("flaky"))
    assert [r.summary.n for r in c.rows] == [2, 2, 2] and not c.duplicates


def test_five_arms_one_diverging_two_repeats(ablate_home, tiny, tmp_path, capsys):
    """The acceptance case: exactly 10 (arm, seed) runs, each once; the diverging arm fails
    for good (both seeds tried, neither retried); compare shows no zero-width interval."""
    arms = {**ARMS, "moe-E2": {"model.ffn": "moe", "model.moe.n_experts": 2, "model.moe.top_k": 1},
            "dense-lr": {"model.ffn": "dense", "optim.lr": 0.01},
            "absurd": {"model.ffn": "dense", "optim.lr": 1.0e6, "optim.grad_clip": 0.0}}
    path = _write(tmp_path, "five", {"study": "five", "space": {"arm": arms}, "repeats": 2,
                                     "n_trials": 5})
    assert main(["sweep", path, *tiny]) == 1
    assert "1 failed for good (1 diverged)" in capsys.readouterr().err.strip().splitlines()[-1]
    runs = Counter((r.data.tags["ablate.trial"], r.data.params["trainer.seed"])
                   for r in _children(ablate_home))
    assert len(runs) == 10 and set(runs.values()) == {1}
    trials = {t.params["arm"]: t for t in _study("five").trials}
    assert len(trials) == 5 and trials["absurd"].state.name == "FAIL"
    assert (trials["absurd"].user_attrs["final"]
            and "diverged" in trials["absurd"].user_attrs["fail_reason"])
    c = compare(load_study("five"))
    assert sorted(r.arm for r in c.rows) == ["dense", "dense-lr", "moe-E2", "moe-E4"]
    assert all(r.summary.n == 2 and r.summary.half > 0 for r in c.rows)
    assert main(["sweep", path, *tiny]) == 1  # re-run: the diverged point is not retried
    assert len(_children(ablate_home)) == 10


def test_a_changed_sweep_is_refused_or_extended_as_a_revision(ablate_home, tiny, tmp_path, capsys):
    path = _write(tmp_path, "rev", {"study": "rev", "space": {"arm": ARMS}, "n_trials": 2})
    assert main(["sweep", path, *tiny]) == 0
    capsys.readouterr()
    longer = [a for a in tiny if not a.startswith("trainer.max_steps")] + ["trainer.max_steps=9"]
    assert main(["sweep", path, *longer]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trainer.max_steps 6 -> 9" in err[0] and "--extend" in err[0], err
    assert len(_children(ablate_home)) == 2  # nothing trained, nothing pooled
    assert main(["sweep", path, "--extend", *longer]) == 0
    study = _study("rev")
    assert [r["revision"] for r in study.user_attrs["revisions"]] == [1, 2]
    assert Counter(t.user_attrs["revision"] for t in study.trials) == {1: 2, 2: 2}
    new = compare(load_study("rev"))  # the newest revision only
    old = compare(load_study("rev", revision=1))
    assert [r.summary.n for r in new.rows] == [1, 1] and [r.summary.n for r in old.rows] == [1, 1]
    assert {r.values[0] for r in new.rows}.isdisjoint({r.values[0] for r in old.rows})
    apart = compare(load_study("rev", revision="all"))  # each revision's arms apart
    assert sorted(r.summary.n for r in apart.rows) == [1, 1, 1, 1]
    assert all(r.arm.endswith(("(rev 1)", "(rev 2)")) for r in apart.rows)
    assert apart.revision == "revisions 1, 2 (kept apart)" and new.revision == "revision 2 (newest)"
    both = compare(load_study("rev", revision="pool"))  # pooled only when asked
    assert [r.summary.n for r in both.rows] == [2, 2]
    assert main(["compare", "--study", "rev", "--revision", "7"]) == 2
    tags = {r.data.tags["ablate.revision"] for r in _children(ablate_home)}
    assert tags == {"1", "2"}


def test_compare_counts_one_configuration_and_seed_once():
    from ablate.reporting.collect import Objective, RunRow, StudyData
    from ablate.reporting.compare_render import render

    def row(trial, run_id, seed, value, arm="a"):
        config = {"model.ffn": "moe" if arm == "a" else "dense", "trainer.seed": str(seed)}
        return RunRow(trial=trial, repeat=0, state="COMPLETE", arm=arm, params={"arm": arm},
                      config=config, metrics={"val/loss": value}, seed=seed, run_id=run_id)

    rows = [row(0, "r0", 0, 5.0), row(1, "r1", 0, 5.0), row(2, "r2", 1, 5.2),  # r1 repeats r0
            row(3, "b0", 0, 5.5, "b"), row(4, "b1", 1, 5.6, "b")]
    data = StudyData("s", None, None, None, None, [Objective("val/loss", "minimize")], rows)
    c = compare(data)
    a = next(r for r in c.rows if r.arm == "a")
    assert a.summary.n == 2 and c.duplicates == {"a": 1}
    assert "counted once" in render(c, "markdown")
    assert json.loads(render(c, "json"))["duplicate_runs"] == {"a": 1}


def test_a_key_a_newer_ablate_adds_at_its_default_does_not_change_a_study():
    """An upgrade that adds config keys (at their defaults) must not orphan stored studies;
    a key set away from its default still does."""
    from ablate.config.load import load_config
    from ablate.sweep.fingerprint import changes, definition
    from ablate.sweep.spec import Objective, SweepSpec

    spec = SweepSpec("s", {}, {"optim.lr": [0.001]}, [Objective()])
    new = definition(spec, load_config())
    old = json.loads(json.dumps(new))
    for key in [k for k in old["base"] if k.startswith("model.mtp.")]:
        del old["base"][key]  # as a study stored before MTP existed
    assert changes(old, new) == ""
    moved = definition(spec, load_config(overrides=["model.mtp.depth=1"]))
    assert "model.mtp.depth '<unset>' -> 1" in changes(old, moved)
