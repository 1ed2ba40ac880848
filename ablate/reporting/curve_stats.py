"""Curves over runs: the pointwise mean and t-interval of several runs' histories."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ablate.reporting.stats import mean_ci


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
