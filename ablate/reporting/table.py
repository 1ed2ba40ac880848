"""The study's final comparison table (rich), one row per trial."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ablate.sweep.record import TrialRecord


def _fmt(v: Any) -> str:
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def trials_table(study, objectives: list[str], title: str = "") -> Table:
    import optuna

    table = Table(title=title or f"study {study.study_name}", header_style="bold")
    for col in ["trial", "state", "arm / params", *objectives, "params_active", "tokens/s", "min"]:
        table.add_column(col, justify="left" if col in ("state", "arm / params") else "right")
    trials = study.get_trials(deepcopy=False)
    multi = len(study.directions) > 1
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1

    def key(t):
        done = t.state == optuna.trial.TrialState.COMPLETE and t.values
        return (0, sign * t.values[0]) if done else (1, t.number)

    for t in sorted(trials, key=key):
        m = TrialRecord.of(t).metrics
        label = t.params.get("arm") or ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        extra = {k: v for k, v in t.params.items() if k != "arm"}
        if "arm" in t.params and extra:
            label += " " + ", ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
        values = list(t.values) if t.values else [m.get(o) for o in objectives]
        minutes = t.duration.total_seconds() / 60 if t.duration else None
        table.add_row(str(t.number), t.state.name, label, *(_fmt(v) for v in values),
                      _fmt(m.get("params_active")), _fmt(m.get("perf/tokens_per_s")), _fmt(minutes))
    if multi:
        table.caption = "Pareto set: trials " + ", ".join(str(t.number) for t in study.best_trials)
    return table
