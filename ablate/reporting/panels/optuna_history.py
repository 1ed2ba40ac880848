"""`optuna_history`: Optuna's optimisation history (objective per trial, best so far)."""

from __future__ import annotations

from ablate.reporting.panels import PANELS
from ablate.reporting.panels._optuna import optuna_figure
from ablate.reporting.panels.optuna_importances import OptunaConfig


@PANELS.register("optuna_history", OptunaConfig, title="optimisation history (Optuna)",
                 description="Objective value of each completed trial in order, with the best "
                 "value so far.")
def optuna_history(cfg: OptunaConfig, ctx):
    from optuna.visualization import plot_optimization_history

    return optuna_figure(plot_optimization_history, ctx, cfg.objective)
