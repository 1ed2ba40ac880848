"""Optuna pruning that reports on `global_step` (not epochs: see PITFALLS #4).

The callback only records the decision and stops the Trainer cleanly; the caller raises
`optuna.TrialPruned` after `fit` returns, so Lightning's teardown always runs. Under DDP,
rank 0 owns the trial and its decision is broadcast, so every rank stops at the same step.
"""

from __future__ import annotations

import math

import lightning as L


class OptunaPruning(L.Callback):
    def __init__(self, trial, monitor: str = "val/loss"):
        self.trial, self.monitor = trial, monitor  # trial is None on DDP ranks > 0
        self.pruned = False
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor)  # already reduced across ranks
        if self.trial is not None and value is not None:
            value = float(value)
            if math.isfinite(value):
                self.trial.report(value, step=trainer.global_step)
            prune = self.trial.should_prune()
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            self.pruned, self.pruned_at = True, trainer.global_step
            trainer.should_stop = True
