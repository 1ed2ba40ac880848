"""Means with 95% confidence intervals over repeats, and the test behind "arm A beats B".

- `mean_ci`: mean ± t_{(1+level)/2, n-1} · s/√n (Student's t, sample std with n-1).
- `paired_test`: the paired t-test over seeds (repeat r of every arm uses seed base+r, so
  arm A's seed s and arm B's seed s see the same init stream and data order): the mean of
  the per-seed differences, its t-interval, and a two-sided p-value with n-1 d.o.f.
- `welch_test`: Welch's unequal-variance t-test, used when no seeds can be matched.
- `mean_curve`: the pointwise mean and t-interval of several runs' histories.

Each refuses what it cannot honestly compute: one value has no interval, and values that
are all equal (runs of different seeds never are, unless they are the same run counted
twice) get no interval and no p-value rather than a zero-width one (NaN, shown as –).

scipy is a runtime dependency of mlflow, so `scipy.stats.t` is always importable here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

NAN = float("nan")


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample std (n-1); nan for n < 2
    half: float  # half-width of the CI; nan for n < 2

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half


@dataclass(frozen=True)
class TestResult:
    test: str  # "paired-t" | "welch-t" | "" (none possible)
    n: int  # pairs (paired) or total runs (welch)
    diff: float  # mean(a - b) (paired) or mean(a) - mean(b) (welch)
    half: float  # half-width of the CI of diff
    p: float  # two-sided p-value; nan when not computable


def t_quantile(q: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def _t_sf2(t_stat: float, df: float) -> float:
    """Two-sided p-value of a t statistic."""
    from scipy.stats import t

    if math.isinf(t_stat):
        return 0.0
    return float(2 * t.sf(abs(t_stat), df))


def _finite(xs: Sequence[float]) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(float(x))]


def mean_ci(xs: Sequence[float], level: float = 0.95) -> Summary:
    xs = _finite(xs)
    n = len(xs)
    if n == 0:
        return Summary(0, NAN, NAN, NAN)
    mean = sum(xs) / n
    if n < 2:
        return Summary(1, mean, NAN, NAN)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    if std == 0:  # n equal values from different seeds: not repeats (one run counted n
        return Summary(n, mean, 0.0, NAN)  # times?) -- a zero-width interval would be a lie
    return Summary(n, mean, std, t_quantile((1 + level) / 2, n - 1) * std / math.sqrt(n))


def paired_test(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> TestResult:
    """Paired t-test of a vs b (same length, element i of each from the same seed)."""
    if len(a) != len(b):
        raise ValueError("paired_test needs equally long, seed-matched sequences")
    d = [x - y for x, y in zip(a, b) if x is not None and y is not None
         and math.isfinite(x) and math.isfinite(y)]
    s = mean_ci(d, level)
    if s.n < 2 or s.std == 0:  # one pair, or identical differences: no honest interval
        return TestResult("", s.n, s.mean, NAN, NAN)
    p = _t_sf2(s.mean / (s.std / math.sqrt(s.n)), s.n - 1)
    return TestResult("paired-t", s.n, s.mean, s.half, p)


def welch_test(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> TestResult:
    """Welch's t-test (unpaired, unequal variances), Welch-Satterthwaite d.o.f."""
    sa, sb = mean_ci(a, level), mean_ci(b, level)
    diff = sa.mean - sb.mean
    if sa.n < 2 or sb.n < 2:
        return TestResult("", sa.n + sb.n, diff, NAN, NAN)
    va, vb = sa.std ** 2 / sa.n, sb.std ** 2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0:  # no spread in either arm: nothing to test honestly
        return TestResult("", sa.n + sb.n, diff, NAN, NAN)
    df = (va + vb) ** 2 / (va ** 2 / (sa.n - 1) + vb ** 2 / (sb.n - 1))
    half = t_quantile((1 + level) / 2, df) * se
    return TestResult("welch-t", sa.n + sb.n, diff, half, _t_sf2(diff / se, df))


@dataclass
class Curve:
    steps: list[int]
    mean: list[float]
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    n: list[int] = field(default_factory=list)


def mean_curve(histories: list[list[tuple[int, float]]], level: float = 0.95) -> Curve:
    """Pointwise mean and t-interval over runs at each step any run logged."""
    steps = sorted({s for h in histories for s, _ in h})
    maps = [dict(h) for h in histories]
    c = Curve([], [], [], [], [])
    for s in steps:
        vals = [m[s] for m in maps if s in m and math.isfinite(m[s])]
        if not vals:
            continue
        summ = mean_ci(vals, level)
        c.steps.append(s)
        c.mean.append(summ.mean)
        c.lo.append(summ.lo if summ.n > 1 else summ.mean)
        c.hi.append(summ.hi if summ.n > 1 else summ.mean)
        c.n.append(summ.n)
    return c
