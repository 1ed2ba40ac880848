"""A study's budget curves read back and judged: interpolation on the flops and time axes
never extrapolates; the view `ablate compare` prints from a real study."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablate.reporting.budgets import at_common_x, budget_grid, interpolate, scale_x
from ablate.reporting.scaling import delta_per_budget


def test_interpolate_is_log_linear_and_never_extrapolates():
    assert interpolate([1, 4], [0.0, 2.0], 2) == pytest.approx(1.0)  # halfway in log x
    assert interpolate([4, 1], [2.0, 0.0], 4) == 2.0  # unsorted input, endpoints included
    assert math.isnan(interpolate([1, 4], [0.0, 2.0], 0.999))
    assert math.isnan(interpolate([1, 4], [0.0, 2.0], 4.001))
    assert math.isnan(interpolate([], [], 1.0))
    out = interpolate([1, 2, 4], [3.0, 2.0, 1.0], np.array([0.5, 1.0, 2 ** 1.5, 8.0]))
    assert np.isnan(out[[0, 3]]).all() and out[1] == 3.0 and out[2] == pytest.approx(1.5)


def test_at_common_x_compares_at_equal_flops():
    budgets = [1e6, 2e6, 4e6, 8e6]
    curves = {"moe": {0: {t: 3.0 - 0.1 * math.log2(t / 1e6) for t in budgets}},
              "dense": {0: {t: 3.2 - 0.1 * math.log2(t / 1e6) for t in budgets}}}
    flops = scale_x(curves, {"moe": 3.0, "dense": 1.0})  # moe costs 3× the FLOPs per token
    common = at_common_x(flops)
    assert list(common["moe"][0]) == list(common["dense"][0]) == [3e6, 4e6, 6e6, 8e6]
    # moe at 4e6 FLOPs = 4/3e6 tokens, read between its 3e6 and 6e6 FLOPs points (log x)
    assert common["moe"][0][4e6] == pytest.approx(3.0 - 0.1 * math.log2(4 / 3))
    assert common["dense"][0][3e6] == pytest.approx(3.2 - 0.1 * math.log2(3))
    for x, test in delta_per_budget(common, "moe", "dense"):
        # moe spends 3× the FLOPs per token: at equal FLOPs it saw 1/3 of the tokens
        assert test.diff == pytest.approx(-0.2 + 0.1 * math.log2(3), abs=1e-12)
        assert 3e6 <= x <= 8e6
    assert list(at_common_x(flops, grid=[1e6, 5e6, 9e6])["moe"][0]) == [5e6]
    apart = {"a": {0: {1.0: 1.0, 2.0: 0.9}}, "b": {0: {3.0: 1.0, 4.0: 0.9}}}
    assert at_common_x(apart) == {"a": {0: {}}, "b": {0: {}}}  # no shared range: nothing


def test_a_rescaled_axis_has_one_column_per_budget():
    """Runs whose budgets land at different seconds are read at one x per budget: the
    geometric mean of where the runs measured it, inside the range every run covers."""
    budgets = [1e6, 2e6, 4e6]
    curves = {"a": {0: {t / 1000: 1.0 for t in budgets}, 1: {t / 1250: 1.0 for t in budgets}},
              "b": {0: {t / 800: 1.0 for t in budgets}}}
    grid = budget_grid(curves)
    assert len(grid) == 3
    assert grid[0] == pytest.approx(1e6 / 800)  # moved up to where every run has begun
    assert grid[1] == pytest.approx(2e6 / (1000 * 1250 * 800) ** (1 / 3))
    assert grid[2] == pytest.approx(4e6 / 1250)  # moved down to where the first run ends
    assert budget_grid({"a": {0: {1.0: 1.0}}, "b": {0: {3.0: 1.0}}}) == []  # apart: none


# -- a real study with budgets: 2 arms x 3 seeds, budgets of 3, 6, 9 and 12 steps, then 18 -----
# (18/3: the time axis finds a range every run covers while the runs' measured speeds stay
# within 6x of each other; at these tiny sizes a MoE seed once measured 4.7x slower than a
# dense one, where budgets of [6, 9, 12] left no common range)
BUDGET_SWEEP = {
    "study": "budgets",
    "base": {"optim": {"schedule": "wsd", "warmup_steps": 1, "decay_fraction": 0.25},
             "trainer": {"max_steps": 18, "val_every": 3, "budgets": [3, 6, 9, 12]}},
    "space": {"arm": {"dense": {"model.ffn": "dense"},
                      "moe": {"model.ffn": "moe", "model.moe.n_experts": 4}}},
    "repeats": 3,
    "expect": [{"better": "moe", "than": "dense"}],
}


@pytest.fixture(scope="module")
def budget_home(tmp_path_factory):
    import os

    import yaml

    from ablate.cli import main
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("budgets")
    path = root / "budgets.yaml"
    path.write_text(yaml.safe_dump(BUDGET_SWEEP))
    old = os.environ.get("ABLATE_HOME")
    os.environ["ABLATE_HOME"] = str(root / "home")
    try:
        tiny = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_every"))]
        assert main(["sweep", str(path), *tiny]) == 0
    finally:
        os.environ.pop("ABLATE_HOME") if old is None else os.environ.update(ABLATE_HOME=old)
    return root / "home"


def test_compare_across_budgets_in_every_format(budget_home, monkeypatch, capsys):
    """`ablate compare` reads each arm at each budget (5 budgets x 3 seeds), judges the
    expectation at each, prints the trend line, and gives the JSON scripts rely on."""
    import json

    from ablate.cli import main
    from ablate.reporting.budgets import budget_view
    from ablate.reporting.collect import load_study
    from tests.mlflow_helpers import store

    monkeypatch.setenv("ABLATE_HOME", str(budget_home))
    data = load_study("budgets")
    view = budget_view(data)
    tokens = [n * 4 * 32 for n in (3, 6, 9, 12, 18)]
    assert view.xs == tokens and set(view.arms) == {"dense", "moe"}
    assert all(s.n == 3 for rows in view.arms.values() for _, s in rows)
    # the largest budget is each run's own end: its mean is the comparison's
    final = {a: sum(r.metrics["val/loss"] for r in data.complete() if r.arm == a) / 3
             for a in view.arms}
    assert {a: rows[-1][1].mean for a, rows in view.arms.items()} == pytest.approx(final)
    (e,) = view.expectations
    assert [r.tokens for r in e.analysis.budgets] == tokens
    assert main(["compare", "--study", "budgets", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (exp,) = out["expectations"]
    assert exp["verdict"] in ("reproduced", "contradicted", "inconclusive")
    assert [b["tokens"] for b in exp["budgets"]] == tokens
    assert all(set(b) == {"tokens", "delta", "ci", "n", "verdict"} for b in exp["budgets"])
    assert exp["budgets"][-1]["verdict"] == exp["verdict"]  # the largest budget is the verdict
    assert set(exp["trend"]) == {"slope", "slope_ci", "crossover_tokens", "crossover_ci",
                                 "backtest_error", "status"}
    assert exp["trend"]["backtest_error"] is not None  # 5 budgets: backtested
    assert main(["compare", "--study", "budgets"]) == 0
    text = capsys.readouterr().out
    assert "at each budget" in text and "per doubling" in text and "trend:" in text
    for axis in ("flops", "time"):  # read at x every run covers: no extrapolation
        assert main(["compare", "--study", "budgets", "--axis", axis, "--format", "json"]) == 0
        exp = json.loads(capsys.readouterr().out)["expectations"][0]
        assert exp["axis"] == axis and exp["budgets"]
    assert main(["compare", "--study", "budgets", "--axis", "days"]) == 2
    assert main(["compare", "--study", "budgets", "--log"]) == 0
    capsys.readouterr()
    parent = store(budget_home).get_run(data.parent_run_id)
    assert "ablate.budget.0.trend" in parent.data.tags
    assert "per doubling" in parent.data.tags["ablate.budget.0.trend"]


def test_the_budgets_panel_draws_every_arm(budget_home, monkeypatch):
    from ablate.reporting.collect import load_study
    from ablate.reporting.panels import PANELS, make_context
    from ablate.reporting.panels.budgets import BudgetsConfig

    monkeypatch.setenv("ABLATE_HOME", str(budget_home))
    ctx = make_context(load_study("budgets"))
    for axis in ("tokens", "flops", "time"):
        fig, *notes = PANELS.get("budgets").render(BudgetsConfig(axis=axis), ctx)
        names = {t.name for t in fig.data if t.name}
        assert {"dense (n=3)", "moe (n=3)"} <= names
        assert notes and "per doubling" in str(notes[0])


def test_the_time_axis_is_each_runs_clock(budget_home, monkeypatch):
    """A run's seconds at a budget: its tokens times the mean of 1 / perf/tokens_per_s (each
    logged interval covers the same tokens), not tokens / the mean throughput, which makes
    a run whose speed varies look faster than its clock says."""
    import ablate.reporting.budgets as budgets
    from ablate.reporting.collect import load_study
    from ablate.reporting.compare import one_per_config_and_seed

    monkeypatch.setenv("ABLATE_HOME", str(budget_home))
    monkeypatch.setattr(budgets, "at_common_x", lambda curves, grid: curves)  # each run's own x
    data = load_study("budgets")
    curves = budgets.read_curves(data, axis="time")
    runs, _ = one_per_config_and_seed(data.complete())
    for r in runs:
        tps = [v for _, v in data.history(r.run_id, "perf/tokens_per_s")]
        seconds_per_token = sum(1 / v for v in tps) / len(tps)
        assert max(curves[r.arm][r.seed]) == pytest.approx(18 * 4 * 32 * seconds_per_token)
        assert seconds_per_token > 1 / (sum(tps) / len(tps))  # speeds vary: the two differ
