"""The expert-load heatmap logged by every MoE run: a PNG-ready figure that no global state
keeps alive (a sweep logs one per trial)."""

import io

import matplotlib.pyplot as plt

from ablate.tracking.tracker import expert_load_figure


def test_figures_are_not_kept_open_and_render():
    before = plt.get_fignums()
    for _ in range(25):  # pyplot warns at 20 open figures
        fig = expert_load_figure([1, 3], [[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]], "arm")
    assert plt.get_fignums() == before
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG")
    assert fig.axes[0].get_title() == "arm"
