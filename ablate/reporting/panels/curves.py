"""`curves`: a metric over training steps, overlaid by arm (mean over the arm's completed
runs, shaded 95% CI where it has 3+: the t-interval of 2 runs is wide enough to drown the
curves and says little; runs of pruned/failed trials as dotted lines)."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.reporting.panels import PANELS, Note, layout, rgba
from ablate.reporting.stats import mean_curve


@dataclass
class CurvesConfig:
    metric: str = "val/loss"
    x_offset: str | None = None  # a logged config key added to each run's steps (init.dense_steps)
    band: bool = True
    log_y: bool = False


def _offset(row, key: str | None) -> float:
    if not key:
        return 0.0
    try:
        return float(row.config.get(key) or 0)
    except ValueError:
        return 0.0


@PANELS.register("curves", CurvesConfig, title="{metric} over training",
                 description="One line per arm: the mean over its completed runs (repeats); "
                 "shaded: 95% CI across repeats (3 or more). Dotted: runs of pruned or failed "
                 "trials.")
def curves(cfg: CurvesConfig, ctx):
    import plotly.graph_objects as go

    fig = go.Figure()
    drawn = 0
    for arm in ctx.arms:
        color = ctx.colors[arm]
        done = ctx.runs(arm, complete=True)
        hists = [[(s + _offset(r, cfg.x_offset), v)
                  for s, v in ctx.data.history(r.run_id, cfg.metric)]
                 for r in done]
        hists = [h for h in hists if h]
        if hists:
            c = mean_curve(hists)
            if cfg.band and max(c.n) > 2:
                fig.add_trace(go.Scatter(x=c.steps, y=c.hi, mode="lines", line={"width": 0},
                                         legendgroup=arm, showlegend=False, hoverinfo="skip"))
                fig.add_trace(go.Scatter(x=c.steps, y=c.lo, mode="lines", line={"width": 0},
                                         fill="tonexty", fillcolor=rgba(color, 0.18),
                                         legendgroup=arm, showlegend=False, hoverinfo="skip"))
            fig.add_trace(go.Scatter(
                x=c.steps, y=c.mean, mode="lines+markers", name=f"{arm} (n={max(c.n)})",
                line={"color": color, "width": 2}, marker={"size": 5}, legendgroup=arm,
                customdata=c.n, hovertemplate=f"{arm}<br>step %{{x}}<br>{cfg.metric} %{{y:.4f}}"
                "<br>runs %{customdata}<extra></extra>"))
            drawn += 1
        for r in ctx.data.with_runs():
            if r.arm != arm or r.state == "COMPLETE":
                continue
            h = ctx.data.history(r.run_id, cfg.metric)
            if h:
                fig.add_trace(go.Scatter(
                    x=[s + _offset(r, cfg.x_offset) for s, _ in h], y=[v for _, v in h],
                    mode="lines", line={"color": color, "width": 1, "dash": "dot"}, legendgroup=arm,
                    name=f"{arm} t{r.trial} {r.state.lower()}", showlegend=False))
    if not drawn:
        return [Note(f"no completed run logged {cfg.metric}")]
    xtitle = "step" + (f" (+ {cfg.x_offset})" if cfg.x_offset else "")
    layout(fig, 440, xaxis_title=xtitle, yaxis_title=cfg.metric, hovermode="closest")
    if cfg.log_y:
        fig.update_yaxes(type="log")
    return [fig]
