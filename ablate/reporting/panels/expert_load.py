"""`expert_load`: whole-run expert load per arm, a layer x expert heatmap read from each
run's `routing/expert_load.json` (averaged over the arm's completed runs), scaled by the
expert count so that 1 means uniform: 0 is a dead expert, 2 an expert with twice its share."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablate.reporting.panels import PANELS, Note, layout

LOAD_ARTIFACT = "routing/expert_load.json"
def balance_scale(zmax: float) -> list:
    """Blue (under-used, 0 = dead) .. white at exactly 1 (a uniform share) .. red (overloaded),
    for a colour axis from 0 to zmax (> 1)."""
    w = 1.0 / max(zmax, 1.0 + 1e-9)
    return [[0.0, "#08306b"], [w / 2, "#6baed6"], [w, "#f7f7f7"], [w + (1 - w) / 2, "#fb6a4a"],
            [1.0, "#67000d"]]


@dataclass
class ExpertLoadConfig:
    max_arms: int = 12
    cols: int = 3


def mean_matrix(mats: list[list[list[float]]]) -> list[list[float]] | None:
    mats = [m for m in mats if m]
    if not mats:
        return None
    shape = (len(mats[0]), len(mats[0][0]))
    mats = [m for m in mats if (len(m), len(m[0])) == shape]
    return [[sum(m[i][j] for m in mats) / len(mats) for j in range(shape[1])]
            for i in range(shape[0])]


def grid(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


@PANELS.register("expert_load", ExpertLoadConfig,
                 title="expert load over the whole run (layer x expert)",
                 description="Fraction of routed tokens per expert x number of experts: 1 (white) "
                 "is a uniform share, 0 (dark blue) a dead expert, red an overloaded "
                 "one. Mean over the arm's completed runs.")
def expert_load(cfg: ExpertLoadConfig, ctx):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    mats, layers = {}, {}
    for arm in ctx.arms:
        docs = [ctx.data.artifact_json(r.run_id, LOAD_ARTIFACT) for r in ctx.runs(arm)]
        docs = [d for d in docs if d and d.get("load_fraction")]
        m = mean_matrix([d["load_fraction"] for d in docs])
        if m is not None:
            mats[arm], layers[arm] = m, docs[0].get("layers") or list(range(len(m)))
    if not mats:
        return [Note("no completed run has routing/expert_load.json (dense arms have no router)")]
    arms = list(mats)[: cfg.max_arms]
    rows, cols = grid(len(arms), cfg.cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=arms, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if rows > 1 else 0.1)
    zmax = max(2.0, max(v * len(r) for m in mats.values() for r in m for v in r))
    for k, arm in enumerate(arms):
        m = mats[arm]
        n_exp = len(m[0])
        z = [[v * n_exp for v in row] for row in m]
        fig.add_trace(go.Heatmap(
            z=z, x=list(range(n_exp)), y=[f"L{i}" for i in layers[arm]], coloraxis="coloraxis",
            customdata=m,
            hovertemplate=f"{arm}<br>layer %{{y}} expert %{{x}}<br>load x E %{{z:.2f}}"
                          "<br>fraction %{customdata:.4f}<extra></extra>"),
            row=k // cols + 1, col=k % cols + 1)
    fig.update_xaxes(title_text="expert",
                     dtick=1 if max(len(mats[a][0]) for a in arms) <= 16 else None)
    layout(fig, 60 + 230 * rows,
           coloraxis={"colorscale": balance_scale(zmax), "cmin": 0, "cmax": zmax,
                      "colorbar": {"title": "load x E"}})
    notes = ([] if len(mats) <= cfg.max_arms
             else [Note(f"showing {cfg.max_arms} of {len(mats)} arms")])
    dense = [a for a in ctx.arms if a not in mats and ctx.runs(a)]
    if dense:
        notes.append(Note("no routing (dense or without load data): " + ", ".join(dense)))
    return [fig, *notes]
