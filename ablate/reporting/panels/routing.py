"""`routing`: router health over training, one subplot per metric, one line per arm (mean
over completed runs): by default the router's gradient norm and routing churn (is it still
learning?), router entropy, dead experts and the dropped-token fraction (`moe/<name>`: the
mean over MoE layers; name a layer's metric as `moe/l0/<name>`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ablate.reporting.panels import PANELS, Note, layout
from ablate.reporting.stats import mean_curve


@dataclass
class RoutingPanelConfig:
    metrics: list = field(default_factory=lambda: ["router_grad_norm", "routing_churn",
                                                   "router_entropy", "dead_experts", "drop_frac"])


def metric_key(name: str) -> str:
    return name if "/" in name else f"moe/{name}"


@PANELS.register("routing", RoutingPanelConfig, title="router health over training",
                 description="Mean over MoE layers and over the arm's completed runs. A router "
                 "gradient norm near 0 with no routing churn is a router that does not learn; "
                 "falling entropy and rising dead experts mean a collapsing router; drop_frac "
                 "is the share of token-slots dropped by capacity limits.")
def routing(cfg: RoutingPanelConfig, ctx):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = [metric_key(m) for m in cfg.metrics]
    logged = [k for k in keys if any(k in r.metrics for r in ctx.data.complete())]
    if not logged:
        return [Note(f"no completed run logged {', '.join(keys)} (dense arms have no router)")]
    fig = make_subplots(rows=len(logged), cols=1, shared_xaxes=True, subplot_titles=logged,
                        vertical_spacing=0.08)
    for row, key in enumerate(logged, start=1):
        for arm in ctx.arms:
            runs = [r for r in ctx.runs(arm) if key in r.metrics]
            if not runs:
                continue
            c = mean_curve([ctx.data.history(r.run_id, key) for r in runs])
            fig.add_trace(go.Scatter(x=c.steps, y=c.mean, mode="lines", name=arm, legendgroup=arm,
                                     showlegend=row == 1,
                                     line={"color": ctx.colors[arm], "width": 2},
                                     hovertemplate=f"{arm}<br>step %{{x}}<br>{key} "
                                                   f"%{{y:.4g}}<extra></extra>"),
                          row=row, col=1)
        fig.update_yaxes(title_text=key.rsplit("/", 1)[-1], rangemode="nonnegative", row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(logged), col=1)
    dense = [a for a in ctx.arms if ctx.runs(a)
             and not any(k in r.metrics for k in keys for r in ctx.runs(a))]
    layout(fig, 80 + 230 * len(logged))
    return [fig] + ([Note("no router (dense): " + ", ".join(dense))] if dense else [])
