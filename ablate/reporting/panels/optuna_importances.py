"""`optuna_importances`: Optuna's hyperparameter importances (PED-ANOVA in Optuna 5)."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.reporting.panels import PANELS
from ablate.reporting.panels._optuna import optuna_figure


@dataclass
class OptunaConfig:
    objective: int = 0  # which objective of a multi-objective study


@PANELS.register("optuna_importances", OptunaConfig, title="parameter importances (Optuna)",
                 description="How much each search-space parameter explains the objective "
                 "across completed trials (Optuna's default evaluator).")
def optuna_importances(cfg: OptunaConfig, ctx):
    from optuna.visualization import plot_param_importances

    return optuna_figure(plot_param_importances, ctx, cfg.objective, needs_varied_params=True, height=360)
