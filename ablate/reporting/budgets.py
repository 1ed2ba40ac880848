"""A study's verdicts across budgets: each run's `budget/<metric>` curve read back, per arm
(mean ± 95% CI over seeds at each budget), and for each `expect:` line its Δ and verdict at
each budget, the trend and the extrapolated crossover with its backtest (`scaling.py`).

Three axes, the same runs:
    tokens  each budget's tokens (the metric's step)
    flops   tokens × the arm's training FLOPs per token (`flops_per_token`)
    time    tokens × the run's measured seconds per token: its clock in the training loop.
            Each `perf/tokens_per_s` covers the same number of tokens, so the seconds per
            token are the mean of 1 / throughput (1 / the mean throughput would make a run
            whose speed varies look faster than its clock says)
On the flops and time axes the arms' budgets fall at different x, so every run is read at the
x values all runs cover, linearly in log x between its own budgets (`at_common_x`): a
comparison at equal FLOPs or equal time is never extrapolated past a measured budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ablate.errors import ConfigError
from ablate.reporting.compare import one_per_config_and_seed
from ablate.reporting.scaling import BudgetAnalysis, Curves, analyse, describe_trend, per_budget
from ablate.reporting.stats import NAN, Summary
from ablate.reporting.study_data import StudyData
from ablate.sweep.expect import Expectation
from ablate.sweep.record import expectations

AXES = {"tokens": "tokens", "flops": "training FLOPs", "time": "seconds of training"}
PREFIX = "budget/"  # a run's budget curves: budget/val_loss, budget/val_ppl, budget/val_bpb


def budget_metric(metric: str) -> str | None:
    """The budget curve of `metric` (val/loss -> budget/val_loss), if runs log one."""
    name = PREFIX + metric.replace("/", "_")
    from ablate.tracking.metrics import FIXED

    return name if name in FIXED else None


def has_budgets(data: StudyData, metric: str | None = None) -> bool:
    name = budget_metric(metric or data.metric)
    return name is not None and any(name in r.metrics for r in data.complete())


def read_curves(data: StudyData, metric: str | None = None, axis: str = "tokens") -> Curves:
    """arm -> seed -> x -> value of the budget curve of `metric`, one run per (configuration,
    seed), on `axis` (flops and time: read at the x values every run covers)."""
    if axis not in AXES:
        raise ConfigError("--axis", axis, ", ".join(AXES), "unknown axis")
    name = budget_metric(metric or data.metric)
    out: dict[str, dict[int, dict[float, float]]] = {}
    if name is None:
        return out
    runs, _ = one_per_config_and_seed([r for r in data.complete() if r.run_id])
    for r in runs:
        curve = {float(step): v for step, v in data.history(r.run_id, name) if math.isfinite(v)}
        if not curve or r.seed is None:
            continue
        if axis == "flops":
            factor = r.value("flops_per_token", NAN)
        elif axis == "time":
            tps = [v for _, v in data.history(r.run_id, "perf/tokens_per_s") if v > 0]
            factor = sum(1.0 / v for v in tps) / len(tps) if tps else NAN  # seconds per token
        else:
            factor = 1.0
        if not (factor and math.isfinite(factor)):
            continue  # a run that cannot be placed on this axis is left out, not guessed
        out.setdefault(r.arm, {})[r.seed] = {x * factor: v for x, v in curve.items()}
    return out if axis == "tokens" else at_common_x(out, budget_grid(out))


def budget_grid(curves: Curves) -> list[float]:
    """One x per budget for a rescaled axis: the geometric mean over runs of where each run
    measured its i-th budget, moved into the range every run covers (runs differ in FLOPs
    per token and speed, so their budgets land at different x; reading every run at every x
    any of them measured gives a column per run instead of per budget)."""
    runs = [sorted(x for x, v in run.items() if x > 0 and math.isfinite(v))
            for seeds in curves.values() for run in seeds.values()]
    runs = [xs for xs in runs if xs]
    if not runs:
        return []
    lo, hi = max(xs[0] for xs in runs), min(xs[-1] for xs in runs)
    grid = []
    for i in range(min(len(xs) for xs in runs)):
        x = math.exp(sum(math.log(xs[i]) for xs in runs) / len(runs))
        x = min(max(x, lo), hi)
        if lo <= hi and (not grid or x > grid[-1]):
            grid.append(x)
    return grid


@dataclass
class ExpectationBudgets:
    expectation: Expectation
    analysis: BudgetAnalysis

    @property
    def line(self) -> str:
        return describe_trend(self.analysis)


@dataclass
class BudgetView:
    axis: str
    listed: list[Expectation]  # every expect: line of the study, in its order
    metric: str  # the curve read: budget/val_loss
    arms: dict[str, list[tuple[float, Summary]]]  # arm -> (x, mean ± CI over seeds)
    expectations: list[ExpectationBudgets] = field(default_factory=list)

    @property
    def xs(self) -> list[float]:
        return sorted({x for rows in self.arms.values() for x, _ in rows})

    def as_dict(self) -> dict:
        key = "tokens" if self.axis == "tokens" else AXES[self.axis].split()[-1]
        arms = {arm: [{key: x, "mean": _json(s.mean), "ci": _ci(s), "n": s.n} for x, s in rows]
                for arm, rows in self.arms.items()}
        exps = []
        for e in self.expectations:
            d = e.analysis.as_dict()
            if key != "tokens":
                for b in d["budgets"]:
                    b[key] = b.pop("tokens")
            exps.append({**e.expectation.as_dict(), "axis": self.axis, **d})
        return {"axis": self.axis, "metric": self.metric, "arms": arms, "expectations": exps}

    def by_expectation(self) -> dict[int, dict]:
        """The JSON of each judged expectation (budgets, trend), by its index in `listed`."""
        exps = self.as_dict()["expectations"]
        return {self.listed.index(e.expectation): d for e, d in zip(self.expectations, exps)}


def _json(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _ci(s: Summary) -> list[float] | None:
    return [s.lo, s.hi] if math.isfinite(s.half) else None


def budget_view(data: StudyData, metric: str | None = None, axis: str = "tokens",
                arms: Sequence[str] | None = None, n_boot: int = 2000) -> BudgetView | None:
    """The view `ablate compare` prints and the dashboard's budgets panel draws; None when the
    study's runs log no budget curve of `metric`."""
    metric = metric or data.metric
    if not has_budgets(data, metric):
        return None
    curves = read_curves(data, metric, axis)
    order = [a for a in (arms or data.arms(metric)) if a in curves]
    listed = _parse(data)
    view = BudgetView(axis, listed, budget_metric(metric),
                      {a: per_budget(curves, a) for a in order})
    for e in listed:
        if e.relation == "similar" or e.metric_or(data.metric) != metric:
            continue  # a budget verdict is "better/lower/higher" on this metric
        if e.arm not in curves or e.other not in curves:
            continue
        direction = {"lower": "minimize", "higher": "maximize"}.get(e.relation,
                                                                    data.direction(metric))
        view.expectations.append(ExpectationBudgets(
            e, analyse(curves, e.arm, e.other, direction, n_boot=n_boot)))
    return view


def _parse(data: StudyData) -> list[Expectation]:
    from ablate.sweep.expect import parse_expect

    return parse_expect(expectations(data.study) or None) if data.study is not None else []


def log_view(client, parent_run_id: str, view: BudgetView) -> None:
    """On the study's parent run: budgets.json (the whole view) and, per expectation, its trend
    and crossover as tags (the expectation's index as in `ablate.claim.<i>`)."""
    from ablate.tracking.tags import BUDGET_CROSSOVER, BUDGET_TREND

    client.log_dict(parent_run_id, view.as_dict(), "budgets.json")
    for e in view.expectations:
        i = view.listed.index(e.expectation)
        client.set_tag(parent_run_id, BUDGET_TREND.format(i), e.line[:5000])
        cross = e.analysis.trend.crossover
        client.set_tag(parent_run_id, BUDGET_CROSSOVER.format(i),
                       f"{cross:.4g}" if cross is not None else "none")


# -- equal FLOPs / equal time: read every run where all runs were measured ----------------------
def interpolate(xs: Sequence[float], ys: Sequence[float], x):
    """y at x, linear in log x between measured points; NaN outside [min xs, max xs]."""
    px, py = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    keep = np.isfinite(px) & np.isfinite(py) & (px > 0)
    px, py = px[keep], py[keep]
    q = np.asarray(x, dtype=float)
    if len(px) == 0:
        out = np.full(q.shape, NAN)
    else:
        order = np.argsort(px)
        px, py = px[order], py[order]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.interp(np.log(q), np.log(px), py)
        out = np.where((q >= px[0]) & (q <= px[-1]), out, NAN)  # never extrapolate
    return float(out) if out.ndim == 0 else out


def scale_x(curves: Curves, factor: Mapping[str, float]) -> dict:
    """x multiplied per arm, e.g. tokens → FLOPs with factor = FLOPs per token of each arm."""
    return {arm: {s: {x * factor[arm]: v for x, v in run.items()} for s, run in runs.items()}
            for arm, runs in curves.items()}


def at_common_x(curves: Curves, grid: Sequence[float] | None = None) -> dict:
    """Every run read (by `interpolate`) at the x values that lie inside every run's range.

    grid: the x values to read at; by default every x any run measured. Out of the shared
    range nothing is returned, so Δ at equal FLOPs (x = FLOPs) or equal wall time is only
    ever taken where both arms were measured."""
    runs = {(arm, s): {x: v for x, v in run.items() if x > 0 and math.isfinite(v)}
            for arm, seeds in curves.items() for s, run in seeds.items()}
    runs = {key: run for key, run in runs.items() if run}
    if not runs:
        return {arm: {} for arm in curves}
    lo = max(min(run) for run in runs.values())
    hi = min(max(run) for run in runs.values())
    xs = sorted({x for run in runs.values() for x in run} if grid is None else set(grid))
    xs = [x for x in xs if lo <= x <= hi]
    out: dict = {arm: {} for arm in curves}
    for (arm, s), run in runs.items():
        vals = interpolate(list(run), list(run.values()), np.array(xs, dtype=float))
        out[arm][s] = {x: float(v) for x, v in zip(xs, np.atleast_1d(vals))}
    return out


# -- how it is shown ---------------------------------------------------------------------------
def _x(x: float, axis: str) -> str:
    if axis == "time":
        return f"{x:.0f} s" if x >= 10 else f"{x:.2g} s"
    mant, exp = f"{x:.2e}".split("e")
    return f"{float(mant):.3g}e{int(exp)}"


def _cell(s: Summary) -> str:
    if not math.isfinite(s.mean):
        return "–"
    return f"{s.mean:.4f} ± {s.half:.4f}" if math.isfinite(s.half) else f"{s.mean:.4f}"


def _delta(row) -> str:
    t = row.test
    if not math.isfinite(t.diff):
        return "–"
    ci = f" ± {t.half:.4f}" if math.isfinite(t.half) else ""
    return f"{t.diff:+.4f}{ci} {row.verdict}"


def to_rich(view: BudgetView):
    """Two tables (per arm at each budget; per expectation Δ and verdict at each budget) and
    the trend of each expectation, as one rich renderable."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    xs = view.xs
    arms = Table(title=f"{view.metric} at each budget ({AXES[view.axis]}; mean ± 95% CI over "
                       "seeds)", header_style="bold")
    arms.add_column("arm", no_wrap=True)
    for x in xs:
        arms.add_column(_x(x, view.axis), justify="right")
    for arm, rows in view.arms.items():
        by_x = dict(rows)
        arms.add_row(arm, *(_cell(by_x[x]) if x in by_x else "" for x in xs))
    parts = [arms]
    if view.expectations:
        exp = Table(title="expectations at each budget: Δ (arm − other) ± 95% CI, verdict",
                    header_style="bold")
        exp.add_column("expectation")
        for x in xs:
            exp.add_column(_x(x, view.axis), justify="right")
        for e in view.expectations:
            by_x = {r.tokens: r for r in e.analysis.budgets}
            exp.add_row(e.expectation.text(view.metric),
                        *(_delta(by_x[x]) if x in by_x else "" for x in xs))
        parts.append(exp)
        for e in view.expectations:
            parts.append(Text(f"trend: {e.expectation.arm} vs {e.expectation.other}: {e.line}"))
    return Group(*parts)


def to_markdown(view: BudgetView) -> str:
    xs = view.xs
    head = "| arm | " + " | ".join(_x(x, view.axis) for x in xs) + " |"
    lines = [f"**{view.metric} at each budget** ({AXES[view.axis]}; mean ± 95% CI over seeds)",
             "", head, "|---" * (len(xs) + 1) + "|"]
    for arm, rows in view.arms.items():
        by_x = dict(rows)
        lines.append(f"| {arm} | " + " | ".join(_cell(by_x[x]) if x in by_x else ""
                                               for x in xs) + " |")
    for e in view.expectations:
        by_x = {r.tokens: r for r in e.analysis.budgets}
        lines += ["", f"**{e.expectation.text(view.metric)}**: " + ", ".join(
            f"{_x(x, view.axis)}: {_delta(by_x[x])}" for x in xs if x in by_x),
                  "", f"trend: {e.line}"]
    return "\n".join(lines) + "\n"
