"""A small Lightning logger that writes metrics into an existing MLflow run.

Why not `MLFlowLogger`: its `finalize` terminates whatever run it was given (a sweep's parent
run, if handed that one) and its default tracking URI is read from the environment when
Lightning is imported, not when the logger is made. Here the run's lifecycle belongs to
`ablate.tracking.runs`; this logger only batches metrics into it.

Batches are written every `flush_every` metrics or `flush_secs` seconds, whichever comes
first (checked on each call: no thread), and before every checkpoint (`FlushMetrics`), so
a SIGKILLed run keeps its curve up to its last checkpoint: a batch costs one MLflow call, a
step costs a list append. A batch that could not be written stays buffered for the next
flush; a full store stops the run with `StoreFull` (see `ablate.tracking.full_disk`).
"""

from __future__ import annotations

import time

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from ablate.tracking import full_disk

FLUSH_SECS = 5.0


class MlflowRunLogger(Logger):
    def __init__(self, mlflow_client, run_id: str, flush_every: int = 200,
                 flush_secs: float = FLUSH_SECS):
        super().__init__()
        self.client, self.run_id, self.flush_every = mlflow_client, run_id, flush_every
        self.flush_secs = flush_secs
        self._buffer: list = []
        self._flushed_at = time.monotonic()
        # Lightning's own step lags global_step by one inside validation; runs index every
        # metric by optimizer steps done, so the trainer's global_step wins when it is set
        self.step_source = None
        self.last: dict[str, float] = {}  # the latest value of every metric, for summaries
        self._logged: dict[str, tuple[int, float]] = {}  # metric -> its latest (step, value)

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
        step = int(step or 0)
        for key, value in metrics.items():
            if key == "epoch":
                continue
            value = float(value)
            if self._logged.get(key) == (step, value):
                continue  # the same point again: FlushMetrics wrote it before a checkpoint
            self._logged[key] = (step, value)
            self.last[key] = value
            self._buffer.append(Metric(key, value, ts, step))
        if (len(self._buffer) >= self.flush_every
                or time.monotonic() - self._flushed_at >= self.flush_secs):
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        self._flushed_at = time.monotonic()
        while self._buffer:  # log_batch takes at most 1000 metrics per call
            chunk = self._buffer[:1000]
            try:
                self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
            except Exception as e:
                if full_disk.is_full(e):
                    raise full_disk.StoreFull(f"MLflow store full, run {self.run_id}") from e
                raise
            del self._buffer[:len(chunk)]  # only once written: a failed batch is tried again

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """status "failed": an exception or a stop (Ctrl-C, SIGTERM, the sweep's death) is
        ending the fit; a tracking server that does not answer (the sweep's own, killed with
        it) is not waited on (MLflow's client retries each call for about four minutes): the
        batch stays buffered and the run's end says it was not closed."""
        from ablate.tracking.store import server_error

        if status != "success" and server_error(self.client.tracking_uri, timeout=3.0):
            return
        self.flush()
