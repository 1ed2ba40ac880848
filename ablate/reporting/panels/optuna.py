"""Optuna's own plotly figures as panels: `optuna_history` (objective per trial, best so far),
`optuna_parallel` (params vs the objective) and `optuna_importances` (PED-ANOVA in Optuna
5), or a note saying why a figure cannot be drawn."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from ablate.reporting.panels import PANELS, Note, layout


@dataclass
class OptunaConfig:
    objective: int = 0  # which objective of a multi-objective study


@PANELS.register("optuna_history", OptunaConfig, title="optimisation history (Optuna)",
                 description="Objective value of each completed trial in order, with the best "
                 "value so far.")
def optuna_history(cfg: OptunaConfig, ctx):
    from optuna.visualization import plot_optimization_history

    return optuna_figure(plot_optimization_history, ctx, cfg.objective)


@PANELS.register("optuna_parallel", OptunaConfig, title="parallel coordinates (Optuna)",
                 description="One line per completed trial through its parameter values to its "
                 "objective value.")
def optuna_parallel(cfg: OptunaConfig, ctx):
    from optuna.visualization import plot_parallel_coordinate

    return optuna_figure(plot_parallel_coordinate, ctx, cfg.objective)


@PANELS.register("optuna_importances", OptunaConfig, title="parameter importances (Optuna)",
                 description="How much each search-space parameter explains the objective "
                 "across completed trials (Optuna's default evaluator).")
def optuna_importances(cfg: OptunaConfig, ctx):
    from optuna.visualization import plot_param_importances

    return optuna_figure(plot_param_importances, ctx, cfg.objective, needs_varied_params=True,
                         height=360)


def optuna_figure(plot, ctx, objective: int, needs_varied_params: bool = False, height: int = 440):
    study = ctx.data.study
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2:
        return [Note(f"needs at least 2 completed trials; study {ctx.data.name} has {len(done)}")]
    n_obj = len(study.directions)
    if not 0 <= objective < n_obj:
        return [Note(f"objective {objective} out of range: the study has {n_obj} objective(s)")]
    notes = []
    if needs_varied_params:
        varied = sorted(k for k in {k for t in done for k in t.params}
                        if len({repr(t.params.get(k)) for t in done}) > 1)
        if not varied:
            return [Note("no parameter takes two values among the completed trials")]
        if len(varied) == 1:
            notes.append(Note(f"one varied parameter ({varied[0]}): its importance is 1 by "
                              "construction; see the summary and final panels for effect sizes"))
    kw = {}
    if n_obj > 1:
        name = ctx.data.objectives[objective].metric
        kw = {"target": lambda t: t.values[objective], "target_name": name}
    try:
        with warnings.catch_warnings():  # experimental-API and evaluator chatter
            warnings.simplefilter("ignore")
            fig = plot(study, **kw)
    except Exception as e:  # noqa: BLE001 - Optuna refuses (too few trials, params, ...)
        return [Note(f"Optuna could not draw it: {type(e).__name__}: {e}")]
    layout(fig, height, title_text="")  # the panel's heading names it
    if plot.__name__ == "plot_param_importances":
        fig.update_layout(height=max(180, 120 + 45 * len(fig.data[0].y or []))
                          if fig.data else height)
    if plot.__name__ == "plot_optimization_history" and len(done) <= 25:
        fig.update_xaxes(dtick=1)
    return [fig, *notes]
