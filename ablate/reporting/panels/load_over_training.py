"""`load_over_training`: expert load per layer as it develops over training, per arm.

With `routing/expert_load_history.json` in a run ({"layers": [...], "steps": [...],
"load_fraction": [layer][step][expert]}) each layer gets an expert x step heatmap;
otherwise each arm gets a layer x step heatmap of the logged `moe/l{i}/<metric>`
(default `max_load`: the busiest expert's load over the mean, 1 = balanced)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ablate.reporting.panels import PANELS, Note, layout
from ablate.reporting.panels.expert_load import balance_scale, grid
from ablate.reporting.stats import mean_curve

HISTORY_ARTIFACT = "routing/expert_load_history.json"


@dataclass
class LoadOverTrainingConfig:
    metric: str = "max_load"  # a per-layer routing metric: max_load, load_cv, dead_experts, ...
    max_arms: int = 12
    cols: int = 3


def _layer_ids(row, metric: str) -> list[int]:
    pat = re.compile(rf"^moe/l(\d+)/{re.escape(metric)}$")
    return sorted(int(m.group(1)) for k in row.metrics if (m := pat.match(k)))


def _history_figures(cfg, ctx, arms):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    out = []
    for arm in arms:
        doc = next((d for r in ctx.runs(arm)
                    if (d := ctx.data.artifact_json(r.run_id, HISTORY_ARTIFACT))), None)
        if not doc or not doc.get("load_fraction"):
            continue
        layers, steps = doc["layers"], doc["steps"]
        rows, cols = grid(len(layers), 4)
        fig = make_subplots(rows=rows, cols=cols,
                            subplot_titles=[f"{arm}: layer {i}" for i in layers])
        for k, per_step in enumerate(doc["load_fraction"]):
            n_exp = len(per_step[0]) if per_step else 0
            z = [[per_step[s][e] * n_exp for s in range(len(steps))] for e in range(n_exp)]
            fig.add_trace(go.Heatmap(z=z, x=steps, y=list(range(n_exp)), coloraxis="coloraxis",
                                     hovertemplate="step %{x} expert %{y}<br>load x E "
                                                   "%{z:.2f}<extra></extra>"),
                          row=k // cols + 1, col=k % cols + 1)
        fig.update_xaxes(title_text="step")
        fig.update_yaxes(title_text="expert")
        zmax = max(2.0, max((v for t in fig.data for row in t.z for v in row), default=2.0))
        layout(fig, 60 + 230 * rows,
               coloraxis={"colorscale": balance_scale(zmax), "cmin": 0, "cmax": zmax,
                          "colorbar": {"title": "load x E"}})
        out.append(fig)
    return out


@PANELS.register("load_over_training", LoadOverTrainingConfig,
                 title="expert load over training, per layer",
                 description="Per arm: each layer's routing imbalance at every logged step "
                 "(moe/l{i}/max_load: the busiest expert's tokens over the mean; 1 is perfectly "
                 "balanced, E means one expert takes everything). Mean over completed runs.")
def load_over_training(cfg: LoadOverTrainingConfig, ctx):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    arms = [a for a in ctx.arms if any(_layer_ids(r, cfg.metric) for r in ctx.runs(a))]
    if not arms:
        return [Note(f"no completed run logged moe/l<i>/{cfg.metric} (dense arms have no router)")]
    figs = _history_figures(cfg, ctx, arms[: cfg.max_arms])
    if figs:
        return figs
    shown = arms[: cfg.max_arms]
    rows, cols = grid(len(shown), cfg.cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=shown, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if rows > 1 else 0.1)
    zs = []
    for k, arm in enumerate(shown):
        runs = ctx.runs(arm)
        ids = _layer_ids(runs[0], cfg.metric)
        curves = [mean_curve([ctx.data.history(r.run_id, f"moe/l{i}/{cfg.metric}") for r in runs])
                  for i in ids]
        steps = sorted({s for c in curves for s in c.steps})
        z = [[dict(zip(c.steps, c.mean)).get(s) for s in steps] for c in curves]
        zs += [v for row in z for v in row if v is not None]
        fig.add_trace(go.Heatmap(
            z=z, x=steps, y=[f"L{i}" for i in ids], coloraxis="coloraxis",
            hovertemplate=f"{arm}<br>layer %{{y}} step %{{x}}<br>{cfg.metric} "
                          f"%{{z:.3f}}<extra></extra>"),
            row=k // cols + 1, col=k % cols + 1)
    fig.update_xaxes(title_text="step")
    layout(fig, 60 + 230 * rows, coloraxis={"colorscale": "Viridis", "cmin": min(zs, default=0),
                                            "cmax": max(zs, default=1),
                                            "colorbar": {"title": cfg.metric}})
    notes = ([] if len(arms) <= cfg.max_arms
             else [Note(f"showing {cfg.max_arms} of {len(arms)} arms")])
    return [fig, *notes]
