"""Verdicts across budgets: per-budget Δ, trend, power-law fits, crossover CI and backtest.

The coverage test simulates studies from known power laws (3 paired seeds, 4 budgets) and
checks that the crossover CI holds the true D* at least 90% of the time while still saying
something; the same simulation shows that the plain seed bootstrap is too narrow to pass.
"""

import json
import math
import time
from collections import Counter
from itertools import combinations_with_replacement

import numpy as np
import pytest

from ablate.reporting import stats
from ablate.reporting.scaling import (
    SEARCH,
    analyse,
    complete_seeds,
    crossovers,
    delta_per_budget,
    describe_trend,
    fit_power_law,
    per_budget,
    percentile_ci,
    trend,
    verdict,
)
from ablate.reporting.stats import mean_ci, paired_test

N = 1e9  # the largest budget, tokens
FRACTIONS = np.array([1 / 8, 1 / 4, 1 / 2, 1.0])


def _study(rng: np.random.Generator, n_seeds: int = 3, off_sd: float = 0.01, rho: float = 0.6,
           noise_sd: float = 0.003):
    """Two arms from known power laws whose true curves cross at D* in [2, 30] × N.

    dense: L = E + B·(D/N)^-β at 1.55 to 2.1 nats; moe: a lower E, a larger B, so it is
    worse at the measured budgets and better beyond D*. Seed noise: an offset per seed shared
    by all budgets (sd off_sd per arm, correlation rho between the arms of one seed: paired),
    plus independent noise per budget (noise_sd). The per-budget paired Δ then has an sd of
    √(2·off_sd²·(1-rho) + 2·noise_sd²) ≈ 0.01 nats."""
    eb, bb, kb = rng.uniform(1.4, 1.55), rng.uniform(0.15, 0.25), rng.uniform(0.25, 0.4)
    ka = kb * rng.uniform(0.85, 1.15)
    de = rng.uniform(0.04, 0.1)
    x_star = math.exp(rng.uniform(math.log(2), math.log(30)))
    ea, ba = eb - de, (de + bb * x_star ** -kb) * x_star ** ka  # L_a(x*) = L_b(x*)
    curves: dict = {"moe": {}, "dense": {}}
    for s in range(n_seeds):
        shared = rng.normal(0, off_sd * math.sqrt(rho))
        oa, ob = shared + rng.normal(0, off_sd * math.sqrt(1 - rho), 2)
        curves["moe"][s] = {f * N: ea + ba * f ** -ka + oa + rng.normal(0, noise_sd)
                            for f in FRACTIONS}
        curves["dense"][s] = {f * N: eb + bb * f ** -kb + ob + rng.normal(0, noise_sd)
                              for f in FRACTIONS}
    return curves, x_star * N


def _multisets(n: int):
    """The distinct resamples of n seeds with their multinomial weights (10 for n = 3)."""
    idx, w = [], []
    for c in combinations_with_replacement(range(n), n):
        idx.append(c)
        w.append(math.factorial(n) / math.prod(math.factorial(k) for k in Counter(c).values()))
    return np.array(idx), np.array(w)


def _plain_bootstrap_ci(curves) -> tuple[float, float]:
    """The too-narrow variant: percentile interval of D* over every seed resample, exact."""
    tokens, ya, yb = complete_seeds(curves, "moe", "dense")
    idx, w = _multisets(len(ya))
    return percentile_ci(crossovers(tokens, ya[idx].mean(1), yb[idx].mean(1)), 0.95, w)


def _covered(ci, true) -> bool:
    return ci[0] <= true <= (math.inf if ci[1] is None else ci[1])


def test_crossover_ci_coverage_on_simulated_studies():
    rng = np.random.default_rng(20240607)
    n_studies, reported, covered, informative, finite = 200, 0, 0, 0, 0
    plain_covered, widths = 0, []
    t0 = time.process_time()
    for i in range(n_studies):
        curves, true = _study(rng)
        t = analyse(curves, "moe", "dense", n_boot=800, seed=i).trend
        if t.crossover_ci is None:
            continue
        lo, hi = t.crossover_ci
        reported += 1
        covered += lo <= true <= hi
        finite += math.isfinite(hi)
        informative += lo > N or math.isfinite(hi)  # (≤ the largest budget, ∞) says nothing
        widths.append(math.log10(hi / lo))
        plain_covered += _covered(_plain_bootstrap_ci(curves), true)
    cpu = time.process_time() - t0
    coverage, plain = covered / reported, plain_covered / reported
    print(f"\n{reported}/{n_studies} studies report a crossover CI; coverage {coverage:.3f} "
          f"(plain seed bootstrap {plain:.3f}); {informative} informative, {finite} with a "
          f"finite upper end; median CI width ×{10 ** np.median(widths):.3g} (hi/lo; ∞ when "
          f"beyond {SEARCH:.0f}×), median of the finite ones "
          f"×{10 ** np.median([w for w in widths if math.isfinite(w)]):.3g}; {cpu:.1f} s CPU")
    assert coverage >= 0.90
    # it must also say something: not "untrustworthy" everywhere, not (0, ∞) everywhere
    assert reported >= 0.6 * n_studies
    assert informative >= 0.6 * n_studies
    assert finite >= 0.05 * n_studies
    # the same criterion fails a method that ignores how little 3 seeds know
    assert plain < 0.90


def test_plain_bootstrap_over_three_seeds_fails_the_coverage_criterion():
    rng = np.random.default_rng(7)
    hits = [_covered(_plain_bootstrap_ci(c), true) for c, true in (_study(rng) for _ in range(200))]
    assert _multisets(3)[1].sum() == 27 and len(_multisets(3)[0]) == 10
    assert sum(hits) / len(hits) < 0.90


# -- fits ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fractions", [[1 / 4, 1 / 2, 1], [1 / 8, 1 / 4, 1 / 2, 1],
                                       [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1]])
@pytest.mark.parametrize(("e", "b", "beta"), [(1.5, 0.4, 0.35), (2.0, 0.05, 1.2), (0.0, 1.0, 0.1)])
def test_fit_recovers_a_noiseless_power_law(fractions, e, b, beta):
    tokens = np.array(fractions) * N
    f = fit_power_law(tokens, e + b * np.array(fractions) ** -beta)
    assert f.d0 == N
    assert (f.E, f.B, f.beta) == (pytest.approx(e, abs=1e-6), pytest.approx(b, rel=1e-5),
                                  pytest.approx(beta, rel=1e-5))
    assert f(tokens) == pytest.approx(e + b * np.array(fractions) ** -beta, abs=1e-9)
    assert f(4 * N) == pytest.approx(e + b * 4.0 ** -beta, rel=1e-6)  # extrapolates the law
    assert fit_power_law(tokens, e + b * np.array(fractions) ** -beta) == f  # deterministic


def test_fit_respects_the_bounds():
    x = FRACTIONS
    f = fit_power_law(x * N, -0.3 + 2.0 * x ** -0.2)  # would want E = -0.3
    assert f.E >= 0 and f.B >= 0 and 0 < f.beta <= 2
    assert f.E == pytest.approx(0, abs=1e-9)
    g = fit_power_law(x * N, 1.0 + 1e-3 * x ** -3.5)  # would want β = 3.5
    assert g.beta <= 2 and g.beta == pytest.approx(2.0, abs=1e-9)
    rising = 2.0 - 0.1 * x ** -0.5  # would want B < 0: the best flat line is left
    h = fit_power_law(x * N, rising)
    assert h.B == pytest.approx(0, abs=1e-12) and h.E == pytest.approx(rising.mean())
    with pytest.raises(ValueError, match="3 parameters"):
        fit_power_law([N / 2, N], [2.0, 1.9])


# -- backtest ------------------------------------------------------------------------------

def _two_arms(la, lb, n_seeds=3, sd=0.002, seed=0, fractions=FRACTIONS):
    rng = np.random.default_rng(seed)
    curves: dict = {"moe": {}, "dense": {}}
    for s in range(n_seeds):
        off = rng.normal(0, 0.01)
        curves["moe"][s] = {f * N: la(f) + off + rng.normal(0, sd) for f in fractions}
        curves["dense"][s] = {f * N: lb(f) + off + rng.normal(0, sd) for f in fractions}
    return curves


def dense(f):
    return 1.5 + 0.2 * f ** -0.3


def moe(f):  # crosses dense at 8 N
    return 1.44 + (0.06 + 0.2 * 8 ** -0.3) * 8 ** 0.3 * f ** -0.3


def test_backtest_on_a_power_law_is_small_and_trustworthy():
    t = analyse(_two_arms(moe, dense, sd=0.001), "moe", "dense").trend
    assert t.trustworthy
    assert t.backtest_error < 0.005 < abs(t.delta_last)
    assert set(t.arm_errors) == {"moe", "dense"} and max(t.arm_errors.values()) < 0.005
    assert t.crossover == pytest.approx(8 * N, rel=0.3)
    assert N < t.crossover_ci[0] < t.crossover < t.crossover_ci[1]
    assert t.status.startswith("crossover at ")


def test_a_largest_budget_that_breaks_the_trend_withholds_the_crossover():
    def flattening(f):  # dense stops improving at the largest budget: Δ shrinks abruptly
        return dense(min(f, 0.5))

    t = analyse(_two_arms(moe, flattening, sd=0.0005), "moe", "dense").trend
    assert t.backtest_error > abs(t.delta_last) > 0
    assert t.crossover is None and t.crossover_ci is None
    assert t.status == f"untrustworthy: backtest error {t.backtest_error:.3g} > |Δ| " \
                       f"{abs(t.delta_last):.3g}"
    an = analyse(_two_arms(moe, flattening, sd=0.0005), "moe", "dense")
    assert "extrapolation untrustworthy: backtest error" in describe_trend(an)
    assert an.as_dict()["trend"]["crossover_tokens"] is None


def test_three_budgets_cannot_be_backtested():
    an = analyse(_two_arms(moe, dense, fractions=FRACTIONS[1:]), "moe", "dense")
    assert an.trend.status == "untrustworthy: 3 budgets, a backtest needs at least 4"
    assert an.trend.crossover is None and an.trend.backtest_error is None


def test_outcomes_diverging_no_crossover_and_already_crossed():
    worse = analyse(_two_arms(lambda f: dense(f) + 0.02 * f ** 0.3, dense, sd=0.0005),
                    "moe", "dense").trend  # the gap grows with D
    assert worse.status.startswith("diverging") and worse.crossover is None
    slow = analyse(_two_arms(lambda f: dense(f) + 0.02 + 0.001 * np.log2(1 / f), dense,
                             sd=0.0005), "moe", "dense").trend  # narrows, too slowly
    assert slow.status.startswith(f"no crossover within {SEARCH:.0f}×")
    crossed = analyse(_two_arms(lambda f: moe(12 * f), lambda f: dense(12 * f), sd=0.0005),
                      "moe", "dense")  # the same laws measured at 1.5 to 12 N: past D* = 8 N
    assert [r.test.diff > 0 for r in crossed.budgets] == [True, True, True, False]
    assert crossed.trend.status.startswith("already crossed inside the measured range, "
                                           f"between {N / 2:.1e} and {N:.1e} tokens"
                                           .replace("e+0", "e"))
    assert crossed.trend.crossover is None and crossed.trend.crossover_ci is None


def test_one_seed_gives_a_point_but_no_interval():
    an = analyse(_two_arms(moe, dense, n_seeds=1, sd=0.0005), "moe", "dense")
    t = an.trend
    assert t.crossover is not None and t.crossover_ci is None
    assert "no CI: one seed" in t.status
    assert all(r.verdict == "not measured" and r.as_dict()["ci"] is None for r in an.budgets)
    assert math.isnan(t.slope.half) and an.as_dict()["trend"]["slope_ci"] is None


# -- per budget, trend -------------------------------------------------------------------

def test_per_budget_and_delta_reuse_the_stats_module():
    curves = {"a": {0: {1.0: 1.0, 2.0: 0.9}, 1: {1.0: 1.2, 2.0: 0.95}, 2: {1.0: 1.1}},
              "b": {0: {1.0: 1.1, 2.0: 0.8}, 1: {1.0: 1.3, 2.0: 0.85}, 3: {1.0: 9.0}}}
    pb = dict(per_budget(curves, "a"))
    assert pb[1.0] == mean_ci([1.0, 1.2, 1.1]) and pb[2.0] == mean_ci([0.9, 0.95])
    d = dict(delta_per_budget(curves, "a", "b"))  # seeds 2 and 3 have no partner
    assert d[1.0] == paired_test([1.0, 1.2], [1.1, 1.3])
    assert d[2.0] == paired_test([0.9, 0.95], [0.8, 0.85])


def test_verdicts_per_budget():
    assert verdict(stats.TestResult("paired-t", 3, -0.03, 0.01, 0.01)) == "reproduced"
    assert verdict(stats.TestResult("paired-t", 3, 0.03, 0.01, 0.01)) == "contradicted"
    assert verdict(stats.TestResult("paired-t", 3, 0.03, 0.05, 0.3)) == "inconclusive"
    assert verdict(stats.TestResult("", 1, 0.03, math.nan, math.nan)) == "not measured"
    assert verdict(stats.TestResult("paired-t", 3, 0.03, 0.01, 0.01), "maximize") == "reproduced"


def test_trend_is_the_slope_per_doubling():
    slopes = {0: -0.020, 1: -0.025, 2: -0.018}
    curves = {"a": {s: {2.0 ** k * N: 2.0 + 0.01 * s + k * m for k in range(-3, 1)}
                    for s, m in slopes.items()},
              "b": {s: {2.0 ** k * N: 1.9 for k in range(-3, 1)} for s in slopes}}
    t = trend(curves, "a", "b")
    assert t.mean == pytest.approx(np.mean(list(slopes.values())), abs=1e-12)
    assert t.half == pytest.approx(mean_ci(list(slopes.values())).half, rel=1e-9)
    one = trend({"a": {0: curves["a"][0]}, "b": {0: curves["b"][0]}}, "a", "b")
    assert one.mean == pytest.approx(-0.020) and one.n == 1 and math.isnan(one.half)
    assert math.isnan(trend({"a": {0: {N: 1.0}}, "b": {0: {N: 0.9}}}, "a", "b").mean)


# -- equal FLOPs / equal time ----------------------------------------------------------------

# -- the JSON the CLI prints ---------------------------------------------------------------

def _keys_and_json(an):
    d = an.as_dict()
    json.dumps(d, allow_nan=False)
    assert set(d) == {"budgets", "trend"}
    assert all(set(r) == {"tokens", "delta", "ci", "n", "verdict"} for r in d["budgets"])
    assert set(d["trend"]) == {"slope", "slope_ci", "crossover_tokens", "crossover_ci",
                               "backtest_error", "status"}
    assert all(r["verdict"] in ("reproduced", "contradicted", "inconclusive", "not measured")
               for r in d["budgets"])
    return d


def test_as_dict_is_json_with_exactly_the_keys():
    curves = _two_arms(moe, dense, sd=0.001)
    d = _keys_and_json(analyse(curves, "moe", "dense"))
    assert [r["tokens"] for r in d["budgets"]] == list(FRACTIONS * N)
    assert all(r["verdict"] == "contradicted" and r["n"] == 3 for r in d["budgets"])
    lo, hi = d["trend"]["crossover_ci"]
    assert lo < d["trend"]["crossover_tokens"] and (hi is None or hi > lo)
    assert d["trend"]["slope"] < 0 and d["trend"]["slope_ci"][1] < 0
    for extra in ({"direction": "maximize"}, {"a": "dense", "b": "moe"}):
        kw = {"a": "moe", "b": "dense", **extra}
        _keys_and_json(analyse(curves, **kw))
    _keys_and_json(analyse(_two_arms(moe, dense, n_seeds=1), "moe", "dense"))
    _keys_and_json(analyse(_two_arms(moe, dense, fractions=FRACTIONS[2:]), "moe", "dense"))
    _keys_and_json(analyse({"moe": {}, "dense": {}}, "moe", "dense"))


def test_describe_trend_and_speed():
    curves = _two_arms(moe, dense, sd=0.001)
    analyse(curves, "moe", "dense")  # warm up scipy
    t0 = time.perf_counter()
    an = analyse(curves, "moe", "dense")
    assert time.perf_counter() - t0 < 1.0
    assert an.as_dict() == analyse(curves, "moe", "dense").as_dict()  # seeded: deterministic
    line = describe_trend(an)
    assert line.startswith("the gap narrows by ") and " per doubling; crossover at " in line
    assert "(95% CI " in line and "; backtest error " in line and "\n" not in line
