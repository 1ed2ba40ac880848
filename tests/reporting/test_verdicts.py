"""Verdicts of `expect:` lines, against hand-computed paired intervals, and end to end: a
real sweep prints them, and they land on the study's MLflow parent run."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from ablate.reporting.collect import Objective, RunRow, StudyData
from ablate.reporting.stats import t_quantile
from ablate.reporting.verdicts import judge
from ablate.sweep.expect import Expectation

T975_DF2 = t_quantile(0.975, 2)


def data(values: dict[str, list[float]], direction: str = "minimize") -> StudyData:
    rows = []
    for arm, vs in values.items():
        for seed, v in enumerate(vs):
            rows.append(RunRow(trial=len(rows), repeat=seed, state="COMPLETE", arm=arm,
                               params={"arm": arm}, config={"arm": arm, "trainer.seed": str(seed)},
                               metrics={"val/loss": v}, seed=seed, run_id=f"{arm}{seed}"))
    return StudyData("s", None, None, None, None, [Objective("val/loss", direction)], rows)


def test_reproduced_contradicted_inconclusive():
    d = data({"moe": [1.0, 1.1, 1.2], "dense": [1.2, 1.25, 1.5]})  # d = -.2, -.15, -.3
    v = judge(Expectation("better", "moe", "dense"), d)
    assert v.verdict == "reproduced" and v.test.test == "paired-t" and v.test.n == 3
    assert v.test.diff == pytest.approx(-0.65 / 3)
    sd = math.sqrt(sum((x + 0.65 / 3) ** 2 for x in (-0.2, -0.15, -0.3)) / 2)
    assert v.test.half == pytest.approx(T975_DF2 * sd / math.sqrt(3))
    assert judge(Expectation("better", "dense", "moe"), d).verdict == "contradicted"
    assert judge(Expectation("higher", "dense", "moe"), d).verdict == "reproduced"
    # a maximized metric flips what better means
    assert judge(Expectation("better", "dense", "moe"), data(
        {"moe": [1.0, 1.1, 1.2], "dense": [1.2, 1.25, 1.5]}, "maximize")).verdict == "reproduced"
    noisy = data({"a": [1.0, 1.3, 0.9], "b": [1.1, 1.0, 1.05]})  # d = -.1, .3, -.15
    v = judge(Expectation("better", "a", "b"), noisy)
    assert v.verdict == "inconclusive" and v.needed is not None and v.needed > 3
    assert f"{v.needed} repeats" in v.note


def test_power_estimate_settles_at_the_number_it_names():
    """With the observed mean and spread, `needed` seeds make the CI exclude 0, one fewer
    does not."""
    d = data({"a": [1.0, 1.3, 0.9, 1.05], "b": [1.1, 1.1, 1.05, 1.1]})
    v = judge(Expectation("lower", "a", "b"), d)
    diffs = [-0.1, 0.2, -0.15, -0.05]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 3)
    n = v.needed
    assert t_quantile(0.975, n - 1) * sd / math.sqrt(n) < abs(mean)
    assert t_quantile(0.975, n - 2) * sd / math.sqrt(n - 1) >= abs(mean)


def test_similar_within_a_margin():
    close = data({"hash": [1.01, 1.02, 0.99], "top1": [1.0, 1.0, 1.0]})
    assert judge(Expectation("similar", "hash", "top1", margin=0.05), close).verdict == "reproduced"
    far = data({"hash": [1.3, 1.32, 1.29], "top1": [1.0, 1.0, 1.0]})
    assert judge(Expectation("similar", "hash", "top1", margin=0.05), far).verdict == "contradicted"
    wide = data({"hash": [1.0, 1.2, 0.9], "top1": [1.0, 1.0, 1.0]})
    assert (judge(Expectation("similar", "hash", "top1", margin=0.05), wide).verdict
            == "inconclusive")


def test_what_cannot_be_measured_is_not_guessed():
    one = data({"a": [1.0], "b": [1.2]})
    assert judge(Expectation("better", "a", "b"), one).verdict == "not measured"
    same = data({"a": [1.0, 1.1], "b": [1.2, 1.3]})  # the same difference twice: no spread
    v = judge(Expectation("better", "a", "b"), same)
    assert v.verdict == "not measured" and "spread" in v.note


def test_a_sweep_prints_and_logs_its_verdicts(ablate_home, tiny, tmp_path, capsys):
    from ablate.cli import main
    from tests.mlflow_helpers import all_runs, store

    spec = {"study": "exp", "repeats": 2, "n_trials": 2,
            "space": {"arm": {"dense": {"model.ffn": "dense"},
                              "moe": {"model.ffn": "moe", "model.moe.n_experts": 4,
                                      "model.moe.top_k": 1}}},
            "expect": [{"claim": "MoE beats dense", "source": "a test", "better": "moe",
                        "than": "dense"},
                       {"lower": "dense", "than": "moe", "metric": "max:train/loss"}]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), *tiny]) == 0
    out = capsys.readouterr().out
    assert "expectations" in out and "better" in out
    (parent,) = [r for r in all_runs(ablate_home) if r.data.tags.get("ablate.kind") == "study"]
    verdicts = {parent.data.tags[f"ablate.claim.{i}"] for i in range(2)}
    assert verdicts <= {"reproduced", "contradicted", "inconclusive", "not measured"}
    assert "Expectations" in parent.data.tags["mlflow.note.content"]
    local = store(ablate_home).download_artifacts(parent.info.run_id, "claims.json", str(tmp_path))
    doc = json.loads(open(local).read())
    assert [v["claim"] for v in doc["verdicts"][:1]] == ["MoE beats dense"]
    assert doc["verdicts"][1]["metric"] == "max:train/loss" and doc["verdicts"][1]["n"] == 2
    assert main(["compare", "--study", "exp"]) == 0
    assert "expectations" in capsys.readouterr().out
