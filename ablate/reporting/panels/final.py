"""`final`: the last value of a metric per arm: mean ± 95% CI across repeats (Student's t),
every run as a dot, the baseline arm's mean as a dashed line."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.reporting.panels import PANELS, Note, finite, layout


@dataclass
class FinalConfig:
    metric: str | None = None  # default: the dashboard's metric
    baseline: str | None = None  # default: the first arm of the sweep file


@PANELS.register("final", FinalConfig, title="final {metric} per arm (mean ± 95% CI)",
                 description="Diamonds: mean over the arm's completed runs with its 95% CI "
                 "(t distribution, n-1 d.o.f.); dots: single runs (seeds). Best arm on the left. "
                 "Dashed: the baseline's mean.")
def final(cfg: FinalConfig, ctx):
    import plotly.graph_objects as go

    from ablate.reporting.compare import compare

    metric = cfg.metric or ctx.metric
    c = compare(ctx.data, metric, cfg.baseline)
    if not c.rows:
        return [Note(f"no completed run logged {metric}")]
    fig = go.Figure()
    for r in c.rows:
        color = ctx.colors.get(r.arm, "#333")
        s = r.summary
        err = ({"type": "data", "array": [s.half], "visible": True, "thickness": 2, "width": 10}
               if finite(s.half) else None)
        text = f"{s.mean:.4f} ± {s.half:.4f}" if finite(s.half) else f"{s.mean:.4f} (n=1)"
        fig.add_trace(go.Scatter(x=[r.arm], y=[s.mean], error_y=err, mode="markers",
                                 marker={"symbol": "diamond", "size": 13, "color": color},
                                 name=r.arm,
                                 hovertemplate=f"{r.arm}<br>{metric} {text}<br>n={s.n}"
                                               "<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=[r.arm] * len(r.values), y=r.values, mode="markers", showlegend=False,
            marker={"size": 7, "color": "rgba(0,0,0,0)", "line": {"color": color, "width": 1.5}},
            customdata=[[sd] for sd in r.seeds],
            hovertemplate=f"{r.arm}<br>seed %{{customdata[0]}}<br>{metric} %{{y:.4f}}"
                          "<extra></extra>"))
        fig.add_annotation(x=r.arm, y=s.hi if finite(s.half) else s.mean, text=text,
                           showarrow=False, yshift=14, font={"size": 11})
    base = next(r for r in c.rows if r.arm == c.baseline)
    fig.add_hline(y=base.summary.mean, line={"color": "#888", "dash": "dash", "width": 1},
                  annotation_text=f"baseline {c.baseline}", annotation_position="bottom right",
                  annotation_font={"size": 10, "color": "#666"})
    lo = min(min(r.summary.lo if finite(r.summary.half) else r.summary.mean, *r.values)
             for r in c.rows)
    hi = max(max(r.summary.hi if finite(r.summary.half) else r.summary.mean, *r.values)
             for r in c.rows)
    span = (hi - lo) or abs(hi) * 0.05 or 1.0
    fig.update_yaxes(range=[lo - 0.12 * span, hi + 0.15 * span])
    layout(fig, 440, yaxis_title=metric, showlegend=False, xaxis={"type": "category"})
    return [fig]
