"""Verdicts across training budgets: Δ per budget, its trend, power-law fits and a crossover.

Input, for one metric: `curves[arm][seed][tokens] = value`. Seed s of every arm shares the
init stream and data order, so per-seed differences d_s(D) = a_s(D) - b_s(D) are the unit.

- Per budget D: mean ± t_{.975,n-1}·s/√n over seeds (`stats.mean_ci`), and the paired
  t-interval of Δ(D) = mean_s d_s(D) over the seeds both arms have at D (`stats.paired_test`).
  Verdict for "a better than b" (minimize): reproduced if the CI lies below 0, contradicted
  if above, inconclusive otherwise, "not measured" for < 2 pairs or no spread.
- Trend: per seed, the OLS slope k_s = Σ(u-ū)(d_s-d̄_s) / Σ(u-ū)² with u = log2 D (the change
  of Δ per doubling), then mean_ci over the seeds' slopes: k̄ ± t_{.975,n-1}·sd(k)/√n.
  Seeds are the independent unit; budgets of one seed are not (they share its offset).
- Fit, per arm, on the mean curve over seeds: L(D) = E + B·(D/d0)^(-β), d0 = the largest
  budget, E ≥ 0, B ≥ 0, 0 < β ≤ 2 (Kaplan et al. 2020, Hoffmann et al. 2022). For a fixed β
  the model is linear in (E, B), so β is profiled: a grid over (0, 2], golden section around
  the best grid point, then scipy's least_squares (with the bounds) polishes the point fit.
- Crossover ("a better than b" at scale), asked only while b is still ahead at the largest
  budget d0 (else the status says a is ahead, and whether Δ changed sign between budgets):
  with g(D) = L_a(D) - L_b(D), D* is where the last run of g < 0 that reaches 1000·d0 begins
  (a root of g on a log grid, refined by brentq). Searched on (d0, 1000·d0]: none there is
  "no crossover within 1000×", or "diverging" when |g(1000·d0)| > |g(d0)| (the gap grows).
- CI of D*: a parametric bootstrap over the seeds that have every budget in both arms. Seed
  s gives one row Y_s = (a_s(D_1..D_K), b_s(D_1..D_K)), so the pairing of the arms and the
  correlation across budgets (a seed's offset) are kept. Replicate r:
      Ȳ*_r = Ȳ + √(ν/χ²_ν,r) · Σ_s g_rs (Y_s - Ȳ) / √(n(n-1)),   g_rs ~ N(0, 1), ν = n - 1,
  a multivariate t draw around the mean curves with their estimated covariance S/n. Both
  arms are refitted on Ȳ*_r (profiled fit) and D*_r found as above, on (D_1, 1000·d0]: +inf
  when none (the upper end may be "beyond 1000×"; an interval wholly beyond starts at
  1000·d0), D_1 when a is ahead everywhere. CI: the 2.5% and 97.5% percentiles of D*_r,
  from a seeded Generator. Why t: for a linear function c·Ȳ this percentile interval is
  exactly the t-interval c·Ȳ ± t_{.975,n-1}·√(c'Sc/n), calibrated at every n ≥ 2, and
  percentiles carry over through monotone transformations. Resampling 3 seeds instead
  (only 10 distinct multisets, a z-like tail and an (n-1)/n shrunk variance) covers about
  70% in the simulated studies of tests/reporting/test_scaling.py, this method 92-96%.
- Backtest: both arms refitted without the largest budget predict it;
  backtest_error = |(â_K - b̂_K) - Δ_K|. If it exceeds |Δ_K| the extrapolation is
  untrustworthy and no crossover is given. Fewer than 4 budgets: no backtest (3 parameters).
- Equal FLOPs or wall time: the same analysis on curves read at common x (`budgets.py`).

The fits assume a falling metric (a loss): with direction="maximize" only the per-budget
verdicts and the trend are given. NaN is never written to JSON (`as_dict` gives None).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ablate.reporting.stats import NAN, Summary, TestResult, mean_ci, paired_test

Curves = Mapping[str, Mapping[int, Mapping[float, float]]]  # arm -> seed -> x -> value

SEARCH = 1000.0  # crossovers are searched up to SEARCH × the largest budget
MIN_BACKTEST = 4  # budgets: 3 to fit the 3 parameters, 1 to check the prediction
BETA_MAX = 2.0
_BETA_MIN = 1e-3  # 0 < β; at β → 0 the columns 1 and x^-β are no longer separable
_BETA_GRID = np.linspace(0.025, BETA_MAX, 80)
_GOLDEN = (math.sqrt(5) - 1) / 2
_CROSS_GRID = 512  # log-spaced points of the crossover search per replicate


# -- per budget ----------------------------------------------------------------------------

def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def per_budget(curves: Curves, arm: str, level: float = 0.95) -> list[tuple[float, Summary]]:
    """(tokens, mean ± t-CI over seeds) at each budget any seed of `arm` measured."""
    runs = curves.get(arm, {})
    budgets = sorted({t for run in runs.values() for t in run})
    return [(t, mean_ci([run[t] for run in runs.values() if t in run], level)) for t in budgets]


def _pairs(curves: Curves, a: str, b: str, t: float) -> list[tuple[float, float]]:
    ra, rb = curves.get(a, {}), curves.get(b, {})
    return [(ra[s][t], rb[s][t]) for s in sorted(set(ra) & set(rb))
            if _finite(ra[s].get(t)) and _finite(rb[s].get(t))]


def delta_per_budget(curves: Curves, a: str, b: str,
                     level: float = 0.95) -> list[tuple[float, TestResult]]:
    """(tokens, paired test of Δ = a - b) over the seeds both arms measured at that budget."""
    ra, rb = curves.get(a, {}), curves.get(b, {})
    budgets = sorted({t for s in set(ra) & set(rb) for t in set(ra[s]) & set(rb[s])})
    out = []
    for t in budgets:
        pairs = _pairs(curves, a, b, t)
        out.append((t, paired_test([p[0] for p in pairs], [p[1] for p in pairs], level)))
    return out


def verdict(test: TestResult, direction: str = "minimize") -> str:
    """The verdict of "a better than b" from the CI of Δ = a - b."""
    if test.n < 2 or not math.isfinite(test.half):
        return "not measured"
    sign = -1 if direction == "minimize" else 1  # better = lower Δ when minimizing
    lo, hi = test.diff - test.half, test.diff + test.half
    if sign * lo > 0 and sign * hi > 0:
        return "reproduced"
    if sign * lo < 0 and sign * hi < 0:
        return "contradicted"
    return "inconclusive"


def trend(curves: Curves, a: str, b: str, level: float = 0.95) -> Summary:
    """Change of Δ per doubling of tokens: an OLS slope per seed, a t-interval over seeds.

    One seed (or identical slopes) gives the slope with a NaN half-width, fewer than two
    budgets per seed gives NaN: never a zero-width interval."""
    ra, rb = curves.get(a, {}), curves.get(b, {})
    slopes = []
    for s in sorted(set(ra) & set(rb)):
        pts = [(math.log2(t), ra[s][t] - rb[s][t]) for t in sorted(set(ra[s]) & set(rb[s]))
               if t > 0 and _finite(ra[s][t]) and _finite(rb[s][t])]
        if len(pts) < 2:
            continue
        u, d = np.array(pts).T
        slopes.append(float(np.sum((u - u.mean()) * (d - d.mean())) / np.sum((u - u.mean()) ** 2)))
    return mean_ci(slopes, level)


# -- power-law fits ------------------------------------------------------------------------

@dataclass(frozen=True)
class PowerLaw:
    """L(D) = E + B·(D/d0)^(-beta); d0 (the largest budget fitted) keeps B of order 1."""

    E: float
    B: float
    beta: float
    d0: float

    def __call__(self, tokens):
        return self.E + self.B * (np.asarray(tokens, dtype=float) / self.d0) ** -self.beta


def _ls_fixed_beta(z: np.ndarray, y: np.ndarray):
    """Least squares y ≈ E + B·z with E ≥ 0, B ≥ 0 for fixed z = x^-β, over the last axis.

    A convex problem in two variables: the unconstrained optimum if feasible, else the
    better of the optima on the two boundaries E = 0 and B = 0. Works on sums (y centred,
    so that they stay small), which is what keeps thousands of refits cheap."""
    k = y.shape[-1]
    ym = y.mean(-1)
    yc = y - ym[..., None]
    sz, szz = z.sum(-1), (z * z).sum(-1)
    szy, syy = (z * yc).sum(-1), (yc * yc).sum(-1)
    var_z = szz - sz * sz / k
    with np.errstate(divide="ignore", invalid="ignore"):
        b_free = np.where(var_z > 0, szy / var_z, 0.0)
        b_e0 = np.maximum((szy + ym * sz) / szz, 0.0)  # Σ z·y over Σ z²
    e_free = ym - b_free * sz / k

    def sse(e, b):  # Σ (yc - (e - ym) - b z)²
        u = e - ym
        return syy - 2 * b * szy + k * u * u + 2 * u * b * sz + b * b * szz

    best_e, best_b = np.maximum(ym, 0.0), np.zeros_like(b_free)  # the boundary B = 0
    best_sse = sse(best_e, best_b)
    free_ok = (e_free >= 0) & (b_free >= 0)
    for e, b, ok in ((np.zeros_like(b_e0), b_e0, True), (e_free, b_free, free_ok)):
        f = np.where(ok, sse(e, b), np.inf)  # only the free optimum can be infeasible
        better = f < best_sse
        best_e, best_b = np.where(better, e, best_e), np.where(better, b, best_b)
        best_sse = np.where(better, f, best_sse)
    return best_e, best_b, np.maximum(best_sse, 0.0)


def _fit_rows(x: np.ndarray, y: np.ndarray):
    """Profiled fit of E + B·x^-β to each row of y (R, K) at x (K,): arrays E, B, β (R,)."""
    z = x[None, :] ** -_BETA_GRID[:, None]  # (G, K)
    sse = _ls_fixed_beta(z[None], y[:, None, :])[2]  # (R, G)
    j = sse.argmin(1)
    grid_beta, grid_sse = _BETA_GRID[j], sse[np.arange(len(j)), j]
    lo = np.where(j > 0, _BETA_GRID[np.maximum(j - 1, 0)], _BETA_MIN)
    hi = _BETA_GRID[np.minimum(j + 1, len(_BETA_GRID) - 1)]

    def f(beta):
        return _ls_fixed_beta(x[None, :] ** -beta[:, None], y)[2]

    # golden section on the bracket around the best grid point (the profile is smooth there)
    c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fc, fd = f(c), f(d)
    for _ in range(30):
        left = fc < fd
        lo, hi = np.where(left, lo, c), np.where(left, d, hi)
        new = np.where(left, hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo))
        fn = f(new)
        c, d, fc, fd = (np.where(left, new, d), np.where(left, c, new),
                        np.where(left, fn, fd), np.where(left, fc, fn))
    beta = (lo + hi) / 2
    beta = np.where(f(beta) <= grid_sse, beta, grid_beta)  # the grid may hold a bound (β = 2)
    e, b, _ = _ls_fixed_beta(x[None, :] ** -beta[:, None], y)
    return e, b, beta


def fit_power_law(tokens: Sequence[float], values: Sequence[float]) -> PowerLaw:
    """Bounded least-squares fit of E + B·(D/d0)^(-β) to 3 or more budgets (see the module)."""
    from scipy.optimize import least_squares

    t, y = np.asarray(tokens, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(t) & np.isfinite(y) & (t > 0)
    t, y = t[keep], y[keep]
    if len(np.unique(t)) < 3:
        raise ValueError(f"a power law has 3 parameters: {len(np.unique(t))} budgets are too few")
    d0 = float(t.max())
    x = t / d0
    e, b, beta = (float(v[0]) for v in _fit_rows(x, y[None, :]))

    def resid(p):
        return p[0] + p[1] * x ** -p[2] - y

    best, lb, ub = np.array([e, b, beta]), [0.0, 0.0, _BETA_MIN], [np.inf, np.inf, BETA_MAX]
    res = least_squares(resid, best, bounds=(lb, ub), method="trf", xtol=1e-12, ftol=1e-12,
                        gtol=1e-12)
    if np.all(np.isfinite(res.x)) and np.sum(resid(res.x) ** 2) < np.sum(resid(best) ** 2):
        best = res.x  # only ever an improvement on the profiled fit
    return PowerLaw(float(best[0]), float(best[1]), float(best[2]), d0)


def _crossing(pa: tuple, pb: tuple, x_lo: float) -> np.ndarray:
    """D*/d0 per row: where the last run of g = L_a - L_b < 0 reaching SEARCH begins.

    +inf when g ≥ 0 at SEARCH (no crossover in range), x_lo when g < 0 on all of it."""
    lx = np.linspace(math.log(x_lo), math.log(SEARCH), _CROSS_GRID)
    xs = np.exp(lx)[None, :]
    (ea, ba, ka), (eb, bb, kb) = ([np.atleast_1d(v)[:, None] for v in p] for p in (pa, pb))
    g = (ea - eb) + ba * xs ** -ka - bb * xs ** -kb
    nonneg = g >= 0
    last = nonneg.shape[1] - 1 - np.argmax(nonneg[:, ::-1], axis=1)
    out = np.full(len(g), x_lo)
    out[nonneg[:, -1]] = np.inf
    mid = nonneg.any(1) & ~nonneg[:, -1]
    j = last[mid]
    g0, g1 = g[mid, j], g[mid, j + 1]
    out[mid] = np.exp(lx[j] + g0 / (g0 - g1) * (lx[j + 1] - lx[j]))  # linear in log x
    return out


def _crossing_point(fa: PowerLaw, fb: PowerLaw, x_lo: float) -> float:
    """`_crossing` for one pair of fits, the root refined by brentq (in tokens)."""
    from scipy.optimize import brentq

    x = float(_crossing((fa.E, fa.B, fa.beta), (fb.E, fb.B, fb.beta), x_lo)[0])
    if not (x_lo < x < SEARCH):
        return x * fa.d0
    step = math.exp(math.log(SEARCH / x_lo) / (_CROSS_GRID - 1))
    lo, hi = max(x / step, x_lo), min(x * step, SEARCH)

    def gap(t: float) -> float:
        return float(fa(t * fa.d0) - fb(t * fa.d0))

    if gap(lo) >= 0 > gap(hi):
        x = brentq(gap, lo, hi, xtol=1e-12 * x)
    return x * fa.d0


def replicate_means(y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Parametric bootstrap of the mean of the seed rows y (n, P): multivariate t draws
    Ȳ + √(ν/χ²_ν)·N(0, S/n), ν = n - 1, built from the seeds' own deviations (n_boot, P)."""
    n = y.shape[0]
    dev = y - y.mean(0)
    g = rng.standard_normal((n_boot, n))
    scale = np.sqrt((n - 1) / rng.chisquare(n - 1, n_boot)) / math.sqrt(n * (n - 1))
    return y.mean(0) + (g @ dev) * scale[:, None]


def crossover_replicates(tokens: np.ndarray, ya: np.ndarray, yb: np.ndarray, n_boot: int = 2000,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """D*_r (tokens; +inf for none within SEARCH × the largest budget) of bootstrap replicates.

    ya, yb: (n seeds, K budgets), row s of both from seed s."""
    rng = rng if rng is not None else np.random.default_rng(0)
    k = len(tokens)
    means = replicate_means(np.hstack([ya, yb]), n_boot, rng)
    return crossovers(tokens, means[:, :k], means[:, k:])


def crossovers(tokens: np.ndarray, ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """D* (tokens) of each row pair of mean curves ma, mb (R, K), by the profiled fit."""
    d0 = float(np.max(tokens))
    x = np.asarray(tokens, dtype=float) / d0
    return _crossing(_fit_rows(x, ma), _fit_rows(x, mb), float(x.min())) * d0


def percentile_ci(samples: np.ndarray, level: float = 0.95,
                  weights: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile interval, read off the (weighted) empirical CDF: no interpolation, so an
    infinite replicate gives an infinite end, never NaN."""
    order = np.argsort(samples, kind="stable")
    s = np.asarray(samples, dtype=float)[order]
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=float)[order]
    cdf = np.cumsum(w) / w.sum()
    q = (1 - level) / 2

    def pick(p: float) -> float:  # the first sample whose CDF reaches p
        return float(s[min(np.searchsorted(cdf, p - 1e-12), len(s) - 1)])

    return pick(q), pick(1 - q)


# -- one analysis --------------------------------------------------------------------------

@dataclass
class BudgetRow:
    tokens: float
    test: TestResult
    verdict: str

    def as_dict(self) -> dict:
        t = self.test
        ci = [t.diff - t.half, t.diff + t.half] if math.isfinite(t.half) else None
        return {"tokens": float(self.tokens), "delta": _json(t.diff), "ci": ci, "n": t.n,
                "verdict": self.verdict}


@dataclass
class Trend:
    slope: Summary  # change of Δ per doubling of tokens
    status: str
    crossover: float | None = None  # tokens
    crossover_ci: tuple[float, float] | None = None  # the upper end may be inf
    backtest_error: float | None = None
    arm_errors: dict[str, float] = field(default_factory=dict)  # |predicted - observed| per arm
    delta_last: float = NAN  # Δ of the mean curves at the largest budget
    fits: dict[str, PowerLaw] = field(default_factory=dict)

    @property
    def trustworthy(self) -> bool:
        return not self.status.startswith("untrustworthy")

    def as_dict(self) -> dict:
        s = self.slope
        ci = self.crossover_ci
        return {"slope": _json(s.mean),
                "slope_ci": [s.lo, s.hi] if math.isfinite(s.half) else None,
                "crossover_tokens": self.crossover,
                "crossover_ci": [ci[0], _json(ci[1])] if ci is not None else None,
                "backtest_error": self.backtest_error, "status": self.status}


@dataclass
class BudgetAnalysis:
    a: str
    b: str
    direction: str
    budgets: list[BudgetRow]
    trend: Trend

    def as_dict(self) -> dict:
        return {"budgets": [r.as_dict() for r in self.budgets], "trend": self.trend.as_dict()}


def _json(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _tok(x: float) -> str:
    """3.2e8 rather than 3.2e+08."""
    if not math.isfinite(x):
        return str(x)
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def complete_seeds(curves: Curves, a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Budgets with at least 2 pairs (1 if no budget has 2), and the seeds that have all."""
    ra, rb = curves.get(a, {}), curves.get(b, {})
    tests = [(t, test.n) for t, test in delta_per_budget(curves, a, b) if t > 0]
    least = min(2, max((m for _, m in tests), default=0))
    budgets = [t for t, m in tests if m >= least > 0]
    seeds = [s for s in sorted(set(ra) & set(rb))
             if all(_finite(ra[s].get(t)) and _finite(rb[s].get(t)) for t in budgets)]
    ya = np.array([[ra[s][t] for t in budgets] for s in seeds]).reshape(len(seeds), len(budgets))
    yb = np.array([[rb[s][t] for t in budgets] for s in seeds]).reshape(len(seeds), len(budgets))
    return np.array(budgets, dtype=float), ya, yb


def _sign_change(rows: list[BudgetRow]) -> tuple[float, float] | None:
    """The last pair of consecutive budgets between which the mean Δ changes sign."""
    pts = [(r.tokens, r.test.diff) for r in rows if math.isfinite(r.test.diff) and r.test.diff != 0]
    for (t0, d0), (t1, d1) in reversed(list(itertools.pairwise(pts))):
        if (d0 > 0) != (d1 > 0):
            return t0, t1
    return None


def _extrapolate(curves: Curves, a: str, b: str, rows: list[BudgetRow], slope: Summary,
                 level: float, n_boot: int, seed: int) -> Trend:
    tokens, ya, yb = complete_seeds(curves, a, b)
    k, n = len(tokens), len(ya)
    if n == 0 or k == 0:
        return Trend(slope, "not measured: no seed has every budget in both arms")
    if k < MIN_BACKTEST:
        return Trend(slope, f"untrustworthy: {k} budgets, a backtest needs at least {MIN_BACKTEST}")
    ma, mb = ya.mean(0), yb.mean(0)
    d_last = float(ma[-1] - mb[-1])
    # backtest: the largest budget predicted by fits that never saw it
    ba, bb = fit_power_law(tokens[:-1], ma[:-1]), fit_power_law(tokens[:-1], mb[:-1])
    pa, pb = float(ba(tokens[-1])), float(bb(tokens[-1]))
    err = abs((pa - pb) - d_last)
    base = {"backtest_error": err, "arm_errors": {a: abs(pa - ma[-1]), b: abs(pb - mb[-1])},
            "delta_last": d_last}
    if not err <= abs(d_last):
        return Trend(slope, f"untrustworthy: backtest error {err:.3g} > |Δ| {abs(d_last):.3g}",
                     **base)
    fa, fb = fit_power_law(tokens, ma), fit_power_law(tokens, mb)
    base["fits"] = {a: fa, b: fb}
    d0, x_lo = float(tokens[-1]), float(tokens[0] / tokens[-1])
    crossed = _sign_change(rows)
    inside = (f"Δ changes sign inside the measured range, between {_tok(crossed[0])} and "
              f"{_tok(crossed[1])} tokens") if crossed else ""
    if d_last < 0:  # a is already better at the largest budget: nothing left to cross
        rev = _crossing((fb.E, fb.B, fb.beta), (fa.E, fa.B, fa.beta), 1.0)[0]
        ahead = inside.replace("Δ changes sign", "already crossed") if crossed else \
            f"{a} already better at the largest budget"
        if math.isfinite(rev) and rev > 1.0:
            ahead += f"; the fits have {b} back ahead at {_tok(rev * d0)} tokens"
        return Trend(slope, ahead, **base)
    point = _crossing_point(fa, fb, x_lo)
    ci = None
    if n >= 2 and np.any(ya.std(0) + yb.std(0) > 0):  # no spread: no interval, not zero width
        reps = crossover_replicates(tokens, ya, yb, n_boot, np.random.default_rng(seed))
        ci = percentile_ci(reps, level)
        # +inf stands for "beyond the search range": an interval wholly there starts at its end
        ci = (min(ci[0], SEARCH * d0), ci[1])
    ci_text = " (no CI: one seed)" if n < 2 else "" if ci is None else \
        f" ({level:.0%} CI {_ci_text(ci, d0)})"
    if point <= d0:
        status = (f"the fits cross at {_tok(point)} tokens, inside the measured range, yet {b} is "
                  "still ahead at the largest budget: the fits do not describe the data")
        return Trend(slope, _join(status, inside), **base)
    if math.isinf(point):
        grows = abs(float(fa(SEARCH * d0) - fb(SEARCH * d0))) > abs(float(fa(d0) - fb(d0)))
        status = ("diverging: the fitted gap grows beyond the largest budget" if grows else
                  f"no crossover within {SEARCH:.0f}× the largest budget")
        return Trend(slope, _join(status + ci_text, inside), crossover_ci=ci, **base)
    return Trend(slope, _join(f"crossover at {_tok(point)} tokens{ci_text}", inside),
                 crossover=float(point), crossover_ci=ci, **base)


def _ci_text(ci: tuple[float, float], d0: float) -> str:
    beyond = f"beyond {SEARCH:.0f}×"
    if math.isfinite(ci[1]):
        return f"{_tok(ci[0])}–{_tok(ci[1])}"
    return beyond if ci[0] >= SEARCH * d0 else f"{_tok(ci[0])}–{beyond}"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def analyse(curves: Curves, a: str, b: str, direction: str = "minimize", *, level: float = 0.95,
            n_boot: int = 2000, seed: int = 0) -> BudgetAnalysis:
    """Per-budget verdicts of "a better than b", the trend of Δ, and (for a minimized metric)
    the extrapolated crossover with its bootstrap CI and backtest (see the module)."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be minimize or maximize, not {direction!r}")
    rows = [BudgetRow(t, test, verdict(test, direction))
            for t, test in delta_per_budget(curves, a, b, level)]
    slope = trend(curves, a, b, level)
    if direction == "maximize":
        status = "no power-law fit: the fits need a minimized metric (a loss)"
        return BudgetAnalysis(a, b, direction, rows, Trend(slope, status))
    return BudgetAnalysis(a, b, direction, rows,
                          _extrapolate(curves, a, b, rows, slope, level, n_boot, seed))


def describe_trend(analysis: BudgetAnalysis) -> str:
    """One line: the trend per doubling, then the crossover or why there is none."""
    t = analysis.trend
    s, last = t.slope, t.delta_last
    if not math.isfinite(last) and analysis.budgets:
        last = analysis.budgets[-1].test.diff
    if not math.isfinite(s.mean):
        head = "no trend (fewer than 2 budgets per seed)"
    else:
        size = f"{abs(s.mean):.3g}" + (f" ± {s.half:.2g}" if math.isfinite(s.half) else "")
        if math.isfinite(last) and last != 0 and s.mean != 0:
            head = f"the gap {'narrows' if s.mean * last < 0 else 'widens'} by {size} per doubling"
        else:
            head = f"Δ changes by {'+' if s.mean >= 0 else '-'}{size} per doubling"
    if not t.trustworthy:
        return f"{head}; extrapolation {t.status}"
    tail = t.status
    if t.backtest_error is not None:
        tail += f"; backtest error {t.backtest_error:.3g} (Δ at the largest budget {last:.3g})"
    return f"{head}; {tail}"
