import optuna
import yaml

from ablate.cli import main
from ablate.sweep.study import make_storage
from tests.mlflow_helpers import all_runs

SWEEP = {
    "study": "tiny",
    "base": {"model": {"ffn": "moe"}},
    "space": {
        "arm": {"dense": {"model.ffn": "dense"},
                "moe-E4": {"model.ffn": "moe", "model.moe.n_experts": 4, "model.moe.top_k": 1}},
    },
    "objective": {"metric": "val/loss", "direction": "minimize"},
    "sampler": {"name": "bruteforce", "seed": 0},
    "n_trials": 2,
}


def test_two_trial_sweep_then_resume(ablate_home, tiny, tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    assert main(["sweep", str(path), *tiny]) == 0

    study = optuna.load_study(study_name="tiny", storage=make_storage(None, "tiny"))
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert {t.params["arm"] for t in trials} == {"dense", "moe-E4"}

    runs = all_runs(ablate_home)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert parent.info.status == "FINISHED"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert {"val/loss", "train/loss", "perf/tokens_per_s"} <= set(child.data.metrics)
        assert int(child.data.params["params_active"]) > 0
        trial = trials[int(child.data.tags["ablate.trial"])]
        # the arm, as MLflow's group-by reads it: a param and a seed-free tag
        assert child.data.params["arm"] == child.data.tags["ablate.arm"] == trial.params["arm"]
        assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
        assert trial.value == child.data.metrics["val/loss"]
    out = capsys.readouterr().out
    assert "dense" in out and "moe-E4" in out

    # the same command again: resumes, trains nothing, adds no run
    assert main(["sweep", str(path), *tiny]) == 0
    assert len(optuna.load_study(study_name="tiny", storage=make_storage(None, "tiny")).trials) == 2
    assert len(all_runs(ablate_home)) == 3
    # a larger budget on an exhausted grid trains nothing twice
    assert main(["sweep", str(path), "--n-trials", "5", *tiny]) == 0
    assert len(optuna.load_study(study_name="tiny", storage=make_storage(None, "tiny")).trials) == 2


def test_bad_sweep_value_creates_no_study(ablate_home, tiny, tmp_path, capsys):
    bad = dict(SWEEP, space={"arm": {"x": {"model.moe.top_k": 99}}})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["sweep", str(path), *tiny]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.moe.top_k" in err[0]
    assert not ablate_home.exists()


def test_resume_continues_numbering_with_a_sampled_space(ablate_home, tiny, tmp_path):
    spec = dict(SWEEP, study="lr", space={"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2,
                                                          "log": True}},
                sampler={"name": "random", "seed": 1}, n_trials=1)
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), *tiny]) == 0
    assert main(["sweep", str(path), "--n-trials", "2", *tiny]) == 0
    study = optuna.load_study(study_name="lr", storage=make_storage(None, "lr"))
    assert [t.number for t in study.trials] == [0, 1]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    children = [r for r in all_runs(ablate_home) if "mlflow.parentRunId" in r.data.tags]
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1  # one parent throughout
    assert sorted(r.data.tags["ablate.trial"] for r in children) == ["0", "1"]


def test_repeats_and_two_objectives(ablate_home, tiny, tmp_path):
    spec = dict(SWEEP, study="rep", repeats=2,
                objectives=[{"metric": "val/loss", "direction": "minimize"},
                            {"metric": "params_active", "direction": "minimize"}])
    spec.pop("objective")
    path = tmp_path / "rep.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), *tiny]) == 0
    study = optuna.load_study(study_name="rep", storage=make_storage(None, "rep"))
    assert len(study.directions) == 2 and len(study.trials) == 2
    children = [r for r in all_runs(ablate_home) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4  # 2 arms x 2 seeds
    for t in study.trials:
        per = t.user_attrs["metrics_per_repeat"]
        assert len(per) == 2 and per[0]["val/loss"] != per[1]["val/loss"]
        assert t.values[0] == sum(p["val/loss"] for p in per) / 2
        seeds = {r.data.params["trainer.seed"] for r in children
                 if r.data.tags["ablate.trial"] == str(t.number)}
        assert seeds == {"0", "1"}
    assert {t.number for t in study.best_trials}  # a Pareto set exists


def test_diverging_trial_fails_with_reason_and_sweep_goes_on(ablate_home, tiny, tmp_path, capsys):
    spec = dict(SWEEP, study="div", space={"arm": {"sane": {"optim.lr": 0.003},
                                                   "absurd": {"optim.lr": 1.0e6,
                                                              "optim.grad_clip": 0.0}}})
    path = tmp_path / "div.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), *tiny]) == 1  # a point failed: the study is incomplete
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("ablate: study div: 1 of 2 points done, 1 failed for good (1 diverged)")
    trials = {t.params["arm"]: t for t in
              optuna.load_study(study_name="div", storage=make_storage(None, "div")).trials}
    assert trials["sane"].state.name == "COMPLETE"
    assert trials["absurd"].state.name == "FAIL"
    assert "DivergenceError" in trials["absurd"].user_attrs["fail_reason"]
    runs = {r.data.tags.get("ablate.trial"): r for r in all_runs(ablate_home)}
    bad = runs[str(trials["absurd"].number)]
    assert bad.info.status == "FAILED" and "diverged" in bad.data.tags["ablate.fail_reason"]
    assert "train/loss_spike" in runs[str(trials["sane"].number)].data.metrics


def test_off_a_terminal_a_sweep_prints_progress_lines_while_it_runs(ablate_home, tiny, tmp_path):
    """`ablate sweep ... | cat`: plain lines (trial start, each validation with val/loss and
    an ETA, trial end) reach the pipe while the sweep still runs, not at its end; and the
    sweep ends with the commands to look at its results."""
    import os
    import subprocess
    import sys

    path = tmp_path / "lines.yaml"
    path.write_text(yaml.safe_dump(dict(SWEEP, study="lines")))
    env = {**os.environ, "ABLATE_HOME": str(ablate_home)}
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "sweep", str(path), *tiny], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_while_running = []
    for line in proc.stderr:  # a pipe, not a terminal
        if "val/loss" in line and "eta" in line:
            seen_while_running.append(proc.poll() is None)
    out = proc.stdout.read()
    assert proc.wait(timeout=600) == 0
    assert seen_while_running and seen_while_running[0], "no progress line before the end"
    assert "next:" in out and "ablate compare --study lines" in out and "ablate dashboard" in out
    assert "#/experiments/" in out and "workflowType=machine_learning" in out
