"""A study as rows: one `RunRow` per (trial, repeat), and `StudyData`, what every report
reads (rows, arms in order, MLflow histories and JSON artifacts, cached). Built by
`ablate.reporting.collect.load_study`, or by hand in tests.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.sweep.spec import Objective
from ablate.tracking.naming import fmt_value
from ablate.tracking.runs import number

HIGHER_IS_BETTER = ("perf/tokens_per_s",)


@dataclass
class RunRow:
    trial: int
    repeat: int
    state: str  # the Optuna trial's state: COMPLETE, PRUNED, FAIL, RUNNING, ...
    arm: str
    params: dict[str, Any]  # the trial's Optuna params (search space)
    config: dict[str, str]  # the MLflow run's params (flattened config + sizes); {} without a run
    metrics: dict[str, float]  # last value of every metric
    seed: int | None = None
    run_id: str | None = None
    run_name: str | None = None
    fail_reason: str | None = None
    revision: int = 1  # the study revision its trial ran under

    def value(self, key: str, default: float | None = None) -> float | None:
        """A metric's last value, else a numeric param: the sizes that describe a config
        (params_active, flops_per_token, ...) are params, not metrics (a chart's axis in
        MLflow takes either)."""
        return number(self.metrics, self.config, key, default)


def direction_of(metric: str, objectives: list[Objective]) -> str:
    for o in objectives:
        if o.metric == metric:
            return o.direction
    return "maximize" if metric in HIGHER_IS_BETTER else "minimize"


class StudyData:
    """Everything a report needs about one study; MLflow reads are cached."""

    def __init__(self, name: str, study, client, parent_run_id: str | None,
                 experiment_id: str | None, objectives: list[Objective], rows: list[RunRow],
                 by: list[str] | None = None):
        self.name, self.study, self.client = name, study, client
        self.parent_run_id, self.experiment_id = parent_run_id, experiment_id
        self.objectives, self.rows, self.by = objectives, rows, by
        self.tuning: list[RunRow] = []  # runs of a `tune:` stage (never in `rows`)
        self.tuned: tuple[str, ...] = ()  # the keys that stage tunes per arm
        self.revision = "revision 1"  # which revision(s) the rows are, said by every table
        self._history: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self._json: dict[tuple[str, str], Any] = {}
        self._tmp = None

    # -- rows -----------------------------------------------------------------------------
    def complete(self) -> list[RunRow]:
        return [r for r in self.rows if r.state == "COMPLETE"]

    def with_runs(self) -> list[RunRow]:
        return [r for r in self.rows if r.run_id]

    @property
    def metric(self) -> str:
        return self.objectives[0].metric

    def direction(self, metric: str) -> str:
        return direction_of(metric, self.objectives)

    def arms(self, metric: str | None = None) -> list[str]:
        """Arm labels, best mean `metric` (default: the first objective) first; arms without a
        completed run last, in sweep order."""
        metric = metric or self.metric
        sign = -1 if self.direction(metric) == "maximize" else 1
        means: dict[str, list[float]] = {}
        for r in self.complete():
            v = r.value(metric)
            if v is not None and math.isfinite(v):
                means.setdefault(r.arm, []).append(v)
        order = self.sweep_order()
        return sorted(order, key=lambda a: (0, sign * sum(means[a]) / len(means[a])) if a in means
                      else (1, order.index(a)))

    def sweep_order(self) -> list[str]:
        """Arms in the order of the sweep file's choices (first = the default baseline)."""
        dists: dict[str, Any] = {}
        for t in self.study.get_trials(deepcopy=False) if self.study is not None else []:
            for k, d in t.distributions.items():
                dists.setdefault(k, d)

        def key(row: RunRow):
            out = []
            for k in self.by or sorted(row.params):
                v = row.params.get(k, row.config.get(k))
                choices = getattr(dists.get(k), "choices", None)
                if choices is not None and v in choices:
                    out.append((0, choices.index(v), ""))
                elif isinstance(v, (int, float)):
                    out.append((1, float(v), ""))
                else:
                    out.append((2, 0.0, fmt_value(v)))
            return out, row.trial

        seen: list[str] = []
        for row in sorted(self.rows, key=key):
            if row.arm not in seen:
                seen.append(row.arm)
        return seen

    # -- MLflow reads ---------------------------------------------------------------------
    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of one metric of one run, by step (the last value of each step)."""
        if (run_id, key) not in self._history:
            by_step: dict[int, tuple[int, float]] = {}
            for m in self.client.get_metric_history(run_id, key):
                if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
                    by_step[m.step] = (m.timestamp, m.value)
            self._history[(run_id, key)] = [(s, v) for s, (_, v) in sorted(by_step.items())]
        return self._history[(run_id, key)]

    def artifact_json(self, run_id: str, path: str) -> Any:
        """A JSON artifact of a run, or None when the run has none."""
        if (run_id, path) not in self._json:
            import os

            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="ablate-report-")
            dst = Path(self._tmp.name) / run_id
            dst.mkdir(exist_ok=True)
            try:
                local = self.client.download_artifacts(run_id, path, str(dst))
                value = json.loads(Path(local).read_text())
            except Exception:  # noqa: BLE001 - absent artifact (dense run) or unreadable
                value = None
            self._json[(run_id, path)] = value
        return self._json[(run_id, path)]
