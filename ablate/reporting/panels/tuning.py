"""`tuning`: a `tune:` stage's picture: the objective against the tuned value, one curve per
arm (mean over the tuning seeds, 95% CI as error bars), each arm's chosen value marked."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablate.reporting.panels import PANELS, Note, layout
from ablate.reporting.tuning import tuning_view
from ablate.sweep.tune import label


@dataclass
class TuningConfig:
    metric: str = ""  # default: the study's objective


@PANELS.register("tuning", TuningConfig, title="tuning stage: {metric} against the tuned value",
                 description="One curve per arm: its objective at every value of the tuning "
                 "grid (mean over the tuning seeds, 95% CI); a star marks the value its main "
                 "stage trained at. Studies with a `tune:` block.")
def tuning(cfg: TuningConfig, ctx):
    import plotly.graph_objects as go

    view = tuning_view(ctx.data, cfg.metric or None)
    if view is None:
        return [Note("this study has no tuning stage (`tune:` in the sweep file)")]
    if not view.arms:
        return [Note("no tuning trial has finished yet")]
    numeric = len(view.keys) == 1 and all(isinstance(c[view.keys[0]], (int, float))
                                          for c in view.grid)
    fig = go.Figure()
    for arm, by in view.arms.items():
        color = ctx.colors.get(arm, "#4E79A7")
        xs, ys, err, chosen = [], [], [], None
        for combo in view.grid:
            s = by.get(label(combo))
            if s is None or not math.isfinite(s.mean):
                continue
            x = combo[view.keys[0]] if numeric else label(combo)
            xs.append(x)
            ys.append(s.mean)
            err.append(s.half if math.isfinite(s.half) else 0.0)
            if view.chosen.get(arm) == label(combo):
                chosen = (x, s.mean)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=arm, legendgroup=arm,
                                 line={"color": color}, error_y={"type": "data", "array": err}))
        if chosen is not None:
            fig.add_trace(go.Scatter(x=[chosen[0]], y=[chosen[1]], mode="markers",
                                     marker={"symbol": "star", "size": 16, "color": color},
                                     legendgroup=arm, showlegend=False,
                                     hovertext=f"{arm}: chosen {view.chosen[arm]}"))
    layout(fig, 400, xaxis_title=", ".join(view.keys), yaxis_title=view.metric,
           hovermode="closest")
    if numeric and all(c[view.keys[0]] > 0 for c in view.grid):
        fig.update_xaxes(type="log")
    return [fig, *(Note(w) for w in view.warnings)]
