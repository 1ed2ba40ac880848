"""`pareto`: the final metric per arm against its cost (active params, FLOPs per token,
throughput), one subplot per cost, with the Pareto front of each. Sizes are the runs' params
(`RunRow.value` reads a metric, else a param). Error bars: the 95% CI from 3 runs on, kept
inside the quantity's domain (a throughput or a size is never below 0); below 3 runs the
min-max range, since a t-interval from 2 runs is wider than the data say anything about."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ablate.reporting.panels import PANELS, Note, finite, layout
from ablate.reporting.stats import mean_ci


@dataclass
class ParetoConfig:
    y: str | None = None  # default: the dashboard's metric
    x: list = field(default_factory=lambda: ["params_active", "flops_per_token",
                                             "perf/tokens_per_s"])
    maximize: list = field(default_factory=lambda: ["perf/tokens_per_s"])  # higher x is better
    log_x: bool = False


def pareto_front(points: list[tuple[float, float]], x_max: bool, y_max: bool) -> list[int]:
    """Indices of non-dominated points (no other point at least as good in both, better in one)."""
    sx, sy = (-1 if x_max else 1), (-1 if y_max else 1)
    front = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(
            sx * xj <= sx * xi and sy * yj <= sy * yi and (sx * xj < sx * xi or sy * yj < sy * yi)
            for j, (xj, yj) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _bar(values: list[float], s) -> dict | None:
    """Plotly error bars: min-max under 3 runs, else the t-interval cut at 0 for a quantity
    whose values are all positive; None when there is no spread."""
    vals = [v for v in values if finite(v)]
    if len(vals) < 2 or max(vals) == min(vals):
        return None
    if len(vals) < 3:
        lo, hi = min(vals), max(vals)
    else:
        lo, hi = s.lo, s.hi
        if min(vals) > 0:
            lo = max(lo, 0.0)
    return {"type": "data", "symmetric": False, "array": [hi - s.mean],
            "arrayminus": [s.mean - lo], "visible": True}


@PANELS.register("pareto", ParetoConfig, title="{metric} vs cost: Pareto fronts",
                 description="One point per arm: mean of its completed runs, bars: 95% CI. "
                 "Dashed: the Pareto front (no arm is better in both coordinates).")
def pareto(cfg: ParetoConfig, ctx):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    y = cfg.y or ctx.metric
    y_max = ctx.data.direction(y) == "maximize"
    arms = [a for a in ctx.arms if ctx.runs(a)]
    if not arms:
        return [Note(f"no completed run logged {y}")]
    xs = [x for x in cfg.x if any(r.value(x) is not None for r in ctx.data.complete())]
    if not xs:
        return [Note(f"none of {', '.join(cfg.x)} was logged by the completed runs")]
    titles = [f"{x} ({'higher' if x in cfg.maximize else 'lower'} is better)" for x in xs]
    fig = make_subplots(rows=1, cols=len(xs), shared_yaxes=True, subplot_titles=titles,
                        horizontal_spacing=0.06)
    y_extent: list[float] = []
    for col, x in enumerate(xs, start=1):
        pts, names, x_extent = [], [], []
        for arm in arms:
            runs = ctx.runs(arm)
            vx, vy = [r.value(x, math.nan) for r in runs], [r.value(y, math.nan) for r in runs]
            sx, sy = mean_ci(vx), mean_ci(vy)
            if not (finite(sx.mean) and finite(sy.mean)):
                continue
            pts.append((sx.mean, sy.mean))
            y_extent += [sy.lo, sy.hi] if finite(sy.half) else [sy.mean]
            x_extent += [sx.lo, sx.hi] if finite(sx.half) else [sx.mean]
            names.append(arm)
            fig.add_trace(go.Scatter(
                x=[sx.mean], y=[sy.mean], mode="markers+text", text=[arm],
                textposition="top center", textfont={"size": 10}, cliponaxis=False, name=arm,
                legendgroup=arm, showlegend=col == 1,
                marker={"size": 11, "color": ctx.colors[arm],
                        "line": {"width": 1, "color": "#333"}},
                error_y=_bar(vy, sy), error_x=_bar(vx, sx),
                hovertemplate=f"{arm}<br>{x} %{{x:,.4g}}<br>{y} %{{y:.4f}}<extra></extra>"),
                row=1, col=col)
        if pts:  # room for the labels and error bars: pad the x range by 12% each side
            lo, hi = min(x_extent), max(x_extent)
            if cfg.log_x and lo > 0:
                pad = 0.12 * ((math.log10(hi) - math.log10(lo)) or 1.0)
                fig.update_xaxes(range=[math.log10(lo) - pad, math.log10(hi) + pad], row=1, col=col)
            else:
                pad = 0.12 * ((hi - lo) or abs(hi) * 0.05 or 1.0)
                fig.update_xaxes(range=[lo - pad, hi + pad], row=1, col=col)
        front = pareto_front(pts, x in cfg.maximize, y_max)
        if len(front) > 1:
            fig.add_trace(go.Scatter(x=[pts[i][0] for i in front], y=[pts[i][1] for i in front],
                                     mode="lines",
                                     line={"color": "#444", "dash": "dash", "width": 1},
                                     name="Pareto front", showlegend=col == 1, legendgroup="front",
                                     hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(title_text=x, type="log" if cfg.log_x else None, row=1, col=col)
    fig.update_yaxes(title_text=y, row=1, col=1)
    if y_extent:  # room for the labels above the top point
        span = (max(y_extent) - min(y_extent)) or abs(max(y_extent)) * 0.05 or 1.0
        fig.update_yaxes(range=[min(y_extent) - 0.1 * span, max(y_extent) + 0.18 * span])
    layout(fig, 460)
    return [fig]
