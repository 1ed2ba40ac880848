"""perf/tokens_per_s and perf/step_ms, measured over each logging interval."""

from __future__ import annotations

import time

import lightning as L


class Throughput(L.Callback):
    def __init__(self, tokens_per_batch: int, every: int):
        self.tokens_per_batch, self.every = tokens_per_batch, every
        self._t0: float | None = None
        self._steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._t0 is None:  # the first step is excluded: warm-up, allocations
            self._t0 = now
            return
        self._steps += 1
        if self._steps >= self.every:
            dt = now - self._t0
            tokens = self._steps * self.tokens_per_batch * trainer.world_size  # all DDP ranks
            pl_module.log("perf/tokens_per_s", tokens / dt)
            pl_module.log("perf/step_ms", 1000.0 * dt / self._steps)
            self._t0, self._steps = now, 0
