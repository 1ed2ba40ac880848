"""Shared by the three Optuna panels: Optuna's own plotly figures, or a note saying why not."""

from __future__ import annotations

import warnings

from ablate.reporting.panels import Note, layout


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
        fig.update_layout(height=max(180, 120 + 45 * len(fig.data[0].y or [])) if fig.data else height)
    if plot.__name__ == "plot_optimization_history" and len(done) <= 25:
        fig.update_xaxes(dtick=1)
    return [fig, *notes]
