"""Expert-load heatmap (layer x expert) as a matplotlib figure for MLflow artifacts."""

from __future__ import annotations


def expert_load_figure(layer_ids: list[int], rows: list[list[float]], title: str = ""):
    """A `matplotlib.figure.Figure` made without pyplot: nothing keeps it alive after it is
    logged (pyplot's figures stay open until closed: one per trial would pile up in a sweep)."""
    from matplotlib.figure import Figure

    n_experts = len(rows[0]) if rows else 0
    fig = Figure(figsize=(max(4, 0.25 * n_experts + 2), 0.5 * len(rows) + 1.5))
    ax = fig.subplots()
    im = ax.imshow(rows, aspect="auto", cmap="viridis", vmin=0)
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.set_yticks(range(len(layer_ids)), [str(i) for i in layer_ids])
    ax.set_title(title or "fraction of routed tokens per expert")
    fig.colorbar(im, ax=ax, label="load fraction (uniform = 1/E)")
    fig.tight_layout()
    return fig
