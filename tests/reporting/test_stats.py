"""CI and test numbers against hand computations (closed forms for 2 d.o.f.) and scipy."""

import math

import pytest

from ablate.reporting.collect import Objective, RunRow, StudyData
from ablate.reporting.compare import compare
from ablate.reporting.compare_render import to_csv, to_json, to_markdown
from ablate.reporting.stats import mean_ci, paired_test, t_quantile, welch_test

A = [1.0, 1.2, 0.9]  # arm A, seeds 0, 1, 2
B = [1.1, 1.25, 1.05]  # arm B, same seeds
# Student's t with 2 d.o.f. in closed form: q-quantile = a*sqrt(2/(1-a^2)), a = 2q-1;
# two-sided p of |t| = 1 - |t|/sqrt(t^2+2)
T975_DF2 = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))  # 4.302653


def test_t_quantile_matches_tables():
    assert t_quantile(0.975, 2) == pytest.approx(T975_DF2, rel=1e-9)
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)  # textbook t tables
    assert t_quantile(0.975, 3) == pytest.approx(3.1824, abs=1e-4)
    assert t_quantile(0.975, 30) == pytest.approx(2.0423, abs=1e-4)


def test_mean_ci_by_hand():
    s = mean_ci(A)
    mean = 3.1 / 3
    sd = math.sqrt(((1.0 - mean) ** 2 + (1.2 - mean) ** 2 + (0.9 - mean) ** 2) / 2)
    assert s.n == 3 and s.mean == pytest.approx(mean)
    assert s.std == pytest.approx(sd) == pytest.approx(0.1527525, abs=1e-7)
    assert (s.half == pytest.approx(T975_DF2 * sd / math.sqrt(3))
            == pytest.approx(0.379458, abs=1e-6))
    assert (s.lo, s.hi) == (pytest.approx(mean - s.half), pytest.approx(mean + s.half))
    one = mean_ci([2.0])
    assert one.n == 1 and one.mean == 2.0 and math.isnan(one.half)
    assert mean_ci([]).n == 0
    assert mean_ci([1.0, float("nan"), 3.0]).n == 2  # non-finite values are left out


def test_paired_t_by_hand_and_scipy():
    r = paired_test(A, B)
    t = -0.1 / (0.05 / math.sqrt(3))  # differences -0.1, -0.05, -0.15: mean -0.1, sd 0.05
    assert r.test == "paired-t" and r.n == 3
    assert r.diff == pytest.approx(-0.1)
    assert (r.half == pytest.approx(T975_DF2 * 0.05 / math.sqrt(3))
            == pytest.approx(0.124207, abs=1e-6))
    assert (r.p == pytest.approx(1 - abs(t) / math.sqrt(t * t + 2))
            == pytest.approx(0.0741799, abs=1e-7))
    scipy_stats = pytest.importorskip("scipy.stats")
    assert r.p == pytest.approx(scipy_stats.ttest_rel(A, B).pvalue)
    same = paired_test([1.0, 2.0], [1.0, 2.0])  # identical differences: refused, not p = 1
    assert same.diff == 0 and same.test == "" and math.isnan(same.p) and math.isnan(same.half)
    assert math.isnan(paired_test([1.0], [2.0]).p)


def test_equal_values_get_no_interval():
    """Three equal numbers from three 'repeats' are one result counted three times: no
    zero-width interval, no p = 0 (the issue's `dense 3 5.482 ± 0.000`)."""
    s = mean_ci([5.482, 5.482, 5.482])
    assert s.n == 3 and s.mean == 5.482 and s.std == 0 and math.isnan(s.half)
    shifted = paired_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # the same difference every time
    assert shifted.test == "" and math.isnan(shifted.p)
    flat = welch_test([1.0, 1.0], [2.0, 2.0])
    assert flat.test == "" and math.isnan(flat.half) and math.isnan(flat.p)


def test_welch_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [1.0, 1.3, 0.8, 1.1], [1.4, 1.6, 1.2]
    r = welch_test(a, b)
    assert r.test == "welch-t" and r.diff == pytest.approx(sum(a) / 4 - sum(b) / 3)
    assert r.p == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def _rows(values: dict[str, list[float]], seeds=(0, 1, 2)) -> list[RunRow]:
    rows = []
    for trial, (arm, vals) in enumerate(values.items()):
        for seed, v in zip(seeds, vals):
            rows.append(RunRow(trial=trial, repeat=seed, state="COMPLETE", arm=arm,
                               params={"arm": arm}, config={"trainer.seed": str(seed)},
                               metrics={"val/loss": v, "params_active": 100.0,
                                        "perf/tokens_per_s": 10.0},
                               seed=seed, run_id=f"r{trial}{seed}"))
    return rows


def test_compare_on_fixed_rows():
    rows = _rows({"B": B, "A": A})
    rows.append(RunRow(trial=9, repeat=0, state="FAIL", arm="A", params={"arm": "A"}, config={},
                       metrics={}))
    data = StudyData("fixed", None, None, None, None, [Objective("val/loss", "minimize")], rows)
    assert compare(data).baseline == "A"  # default: the first arm in sweep order (here: by label)
    c = compare(data, baseline="B")
    assert [r.arm for r in c.rows] == ["A", "B"]  # best (lowest) first
    a = c.rows[0]
    assert a.summary.half == pytest.approx(0.379458, abs=1e-6)
    assert a.test.test == "paired-t" and a.test.p == pytest.approx(0.0741799, abs=1e-7)
    assert a.test.diff == pytest.approx(-0.1) and c.rows[1].test is None
    assert c.not_complete == {"A": 1}
    assert "0.074" in to_markdown(c) and "-0.1000 ± 0.1242" in to_markdown(c)
    assert '"p_value": 0.0741' in to_json(c)
    assert to_csv(c).splitlines()[0].startswith("arm,baseline,n,metric,mean,ci95_low,ci95_high")
    # a baseline by name, and unmatched seeds fall back to Welch's test
    c2 = compare(StudyData("fixed", None, None, None, None, [Objective("val/loss", "minimize")],
                           _rows({"A": A}) + _rows({"B": B}, seeds=(5, 6, 7))))
    assert c2.baseline == "A" and next(r for r in c2.rows if r.arm == "B").test.test == "welch-t"
