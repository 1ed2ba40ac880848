"""`optuna_parallel`: Optuna's parallel-coordinates plot of params vs the objective."""

from __future__ import annotations

from ablate.reporting.panels import PANELS
from ablate.reporting.panels._optuna import optuna_figure
from ablate.reporting.panels.optuna_importances import OptunaConfig


@PANELS.register("optuna_parallel", OptunaConfig, title="parallel coordinates (Optuna)",
                 description="One line per completed trial through its parameter values to its "
                 "objective value.")
def optuna_parallel(cfg: OptunaConfig, ctx):
    from optuna.visualization import plot_parallel_coordinate

    return optuna_figure(plot_parallel_coordinate, ctx, cfg.objective)
