"""`budgets`: the metric at each training budget per arm (mean over seeds, shaded 95% CI),
on tokens, training FLOPs or wall time; for each `expect:` line the fitted power laws of its
two arms (dashed, tokens axis) and the extrapolated crossover with its CI, when the backtest
trusts it. Runs need `trainer.budgets` (a wsd run's cooldown branches)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ablate.reporting.budgets import AXES, budget_view
from ablate.reporting.panels import PANELS, Note, layout, rgba


@dataclass
class BudgetsConfig:
    metric: str = "val/loss"
    axis: str = "tokens"  # tokens | flops | time
    extrapolate: float = 8.0  # the fitted curves drawn up to this × the largest budget


@PANELS.register("budgets", BudgetsConfig, title="{metric} across budgets ({axis})",
                 description="One line per arm: the metric at each budget (mean over seeds, "
                 "shaded 95% CI). Dashed: the fitted L(D) = E + B·D^-β of an expectation's "
                 "arms; the crossover, where the backtest trusts the extrapolation, with its "
                 "95% CI shaded.")
def budgets(cfg: BudgetsConfig, ctx):
    import plotly.graph_objects as go

    if cfg.axis not in AXES:
        return [Note(f"axis {cfg.axis!r}: one of {', '.join(AXES)}")]
    view = budget_view(ctx.data, cfg.metric, cfg.axis, ctx.arms)
    if view is None or not view.arms:
        return [Note(f"no completed run logged a budget curve of {cfg.metric} "
                     "(trainer.budgets with optim.schedule=wsd)")]
    fig = go.Figure()
    for arm, rows in view.arms.items():
        color = ctx.colors.get(arm, "#4E79A7")
        xs = [x for x, _ in rows]
        lo = [s.lo if math.isfinite(s.half) else s.mean for _, s in rows]
        hi = [s.hi if math.isfinite(s.half) else s.mean for _, s in rows]
        n = max((s.n for _, s in rows), default=0)
        if n > 1:
            fig.add_trace(go.Scatter(x=xs, y=hi, mode="lines", line={"width": 0},
                                     legendgroup=arm, showlegend=False, hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=xs, y=lo, mode="lines", line={"width": 0},
                                     fill="tonexty", fillcolor=rgba(color, 0.18),
                                     legendgroup=arm, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=xs, y=[s.mean for _, s in rows], mode="lines+markers",
                                 name=f"{arm} (n={n})", legendgroup=arm,
                                 line={"color": color, "width": 2}, marker={"size": 6}))
    notes = []
    for e in view.expectations:
        t = e.analysis.trend
        for arm, fit in t.fits.items():
            top = max(x for x, _ in view.arms[arm]) * cfg.extrapolate
            grid = np.geomspace(min(x for x, _ in view.arms[arm]), top, 60)
            fig.add_trace(go.Scatter(x=grid, y=fit(grid), mode="lines", showlegend=False,
                                     line={"color": ctx.colors.get(arm), "dash": "dash"},
                                     legendgroup=arm, hoverinfo="skip"))
        if t.crossover is not None:
            fig.add_vline(x=t.crossover, line={"dash": "dot", "color": "#555"})
            if t.crossover_ci is not None and math.isfinite(t.crossover_ci[1]):
                fig.add_vrect(x0=t.crossover_ci[0], x1=t.crossover_ci[1], fillcolor="#999",
                              opacity=0.12, line_width=0)
        notes.append(Note(f"{e.expectation.text(ctx.data.metric)}: {e.line}"))
    layout(fig, 440, xaxis_title=AXES[cfg.axis], yaxis_title=cfg.metric, hovermode="closest")
    fig.update_xaxes(type="log")
    return [fig, *notes]
