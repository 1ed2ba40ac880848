"""The MLflow side of one training run: create it, log params once, log its expert-load
heatmap, end it honestly.

In a DDP trial every rank runs the same training code; only global rank 0 talks to MLflow
(the others get an inert tracker), so a trial is exactly one MLflow run.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ablate.parallel.world import world
from ablate.tracking import runs, store
from ablate.tracking.logger import MlflowRunLogger
from ablate.tracking.tags import STATE


class RunTracker:
    def __init__(self, tracking_uri: str | None, experiment: str, enabled: bool | None = None):
        self.enabled = world().rank == 0 if enabled is None else enabled
        self.tracking_uri = tracking_uri
        self.run_id: str | None = None
        self.client = store.client(tracking_uri) if self.enabled else None
        self.experiment_id = (store.ensure_experiment(self.client, experiment) if self.enabled
                              else None)
        self.logger: MlflowRunLogger | None = None

    def start(self, name: str, tags: dict[str, str], parent_run_id: str | None,
              params: dict[str, Any], config_yaml: str) -> str | None:
        if not self.enabled:
            return None
        self.run_id = runs.create_run(self.client, self.experiment_id, name, tags, parent_run_id)
        runs.log_params(self.client, self.run_id, params)
        self.client.log_text(self.run_id, store.mask(config_yaml), "config.yaml")
        self.logger = MlflowRunLogger(self.client, self.run_id)
        return self.run_id

    def set_tag(self, key: str, value: str) -> None:
        if self.run_id:
            self.client.set_tag(self.run_id, key, store.mask(str(value))[:5000])

    def log_dict(self, obj: Any, path: str) -> None:
        if self.run_id:
            self.client.log_dict(self.run_id, obj, path)

    def log_text(self, text: str, path: str) -> None:
        if self.run_id:
            self.client.log_text(self.run_id, text, path)

    def log_figure(self, figure: Any, path: str) -> None:
        if self.run_id:
            self.client.log_figure(self.run_id, figure, path)

    def log_expert_load(self, layer_ids: list[int], rows: list[list[float]], history: dict,
                        title: str) -> None:
        """The run's expert load (layer x expert fractions, whole run), its history over
        training, and the heatmap: routing/expert_load.{json,png}, expert_load_history.json."""
        if not (self.run_id and rows):
            return
        self.log_dict({"layers": layer_ids, "load_fraction": rows}, "routing/expert_load.json")
        self.log_dict(history, "routing/expert_load_history.json")
        self.log_figure(expert_load_figure(layer_ids, rows, title), "routing/expert_load.png")

    def log_budgets(self, rows: list[dict]) -> None:
        """Each budget's val_loss, val_ppl and val_bpb as `budget/val_loss`, ... with the
        budget in tokens as the metric's step, and the rows as budgets.json."""
        if not self.run_id:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        metrics = [Metric(f"budget/{k}", float(r[k]), ts, int(r["tokens"]))
                   for r in rows for k in ("val_loss", "val_ppl", "val_bpb") if k in r]
        self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)
        self.log_dict({"budgets": rows}, "budgets.json")

    def end(self, status: str, state: str) -> None:
        """status: MLflow's FINISHED | FAILED | KILLED; state: ablate's COMPLETE | PRUNED | ...

        The run is always closed: a failing flush or tag (e.g. a store session broken by the
        interrupt that ends the run) never skips `end_run`, which is retried once on a fresh
        client; the first error is raised afterwards (a full store stays loud)."""
        if not self.run_id:
            return
        if status == "KILLED":  # stopping: a dead server (e.g. the sweep's own, killed with
            error = store.server_error(self.tracking_uri, timeout=3.0)  # it) is not waited on
            if error:
                print(f"ablate: run {self.run_id} stays RUNNING: its tracking server "
                      f"{store.mask(self.tracking_uri or '')} does not answer, {error}; the "
                      "next `ablate sweep` or `ablate doctor --fix` closes it",
                      file=sys.stderr, flush=True)
                return
        first: BaseException | None = None
        for write in ((lambda: self.logger.flush()) if self.logger is not None else None,
                      lambda: self.client.set_tag(self.run_id, STATE, state)):
            if write is None:
                continue
            try:
                write()
            except Exception as e:  # noqa: BLE001 - raised below, after the run is closed
                first = first or e
        try:
            runs.end_run(self.client, self.run_id, status)
        except Exception as e:  # noqa: BLE001
            first = first or e
            runs.end_run(store.client(self.tracking_uri), self.run_id, status)
        if first is not None:
            raise first


def expert_load_figure(layer_ids: list[int], rows: list[list[float]], title: str = ""):
    """The expert-load heatmap (layer x expert), a matplotlib Figure made without pyplot:
    nothing keeps it alive after it is logged (pyplot's figures stay open until closed: one
    per trial would pile up in a sweep)."""
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
