"""A small Lightning logger that writes metrics into an existing MLflow run.

Why not `MLFlowLogger`: its `finalize` terminates whatever run it was given and its
defaults read env vars at import (PITFALLS #7, #8). Here the run's lifecycle belongs to
`ablate.tracking.runs`; this logger only batches metrics into it.
"""

from __future__ import annotations

import time

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only


class MlflowRunLogger(Logger):
    def __init__(self, mlflow_client, run_id: str, flush_every: int = 200):
        super().__init__()
        self.client, self.run_id, self.flush_every = mlflow_client, run_id, flush_every
        self._buffer: list = []
        # Lightning's own step lags global_step by one inside validation; runs index every
        # metric by optimizer steps done, so the trainer's global_step wins when it is set
        self.step_source = None
        self.last: dict[str, float] = {}  # the latest value of every metric, for summaries

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run_id

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """Params are logged once, at run creation (MLflow params are write-once)."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        if self.step_source is not None:
            step = self.step_source()
        for key, value in metrics.items():
            if key == "epoch":
                continue
            value = float(value)
            self.last[key] = value
            self._buffer.append(Metric(key, value, ts, int(step or 0)))
        if len(self._buffer) >= self.flush_every:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        while self._buffer:  # log_batch takes at most 1000 metrics per call
            chunk, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()
