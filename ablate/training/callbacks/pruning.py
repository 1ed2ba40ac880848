"""Optuna pruning that reports on `global_step` (not epochs: see PITFALLS #4).

The callback only records the decision and stops the Trainer cleanly; the caller raises
`optuna.TrialPruned` after `fit` returns, so Lightning's teardown always runs.
"""

from __future__ import annotations

import math

import lightning as L


class OptunaPruning(L.Callback):
    def __init__(self, trial, monitor: str = "val/loss"):
        self.trial, self.monitor = trial, monitor
        self.pruned = False
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.trial is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        step = trainer.global_step
        if math.isfinite(value):
            self.trial.report(value, step=step)
        if self.trial.should_prune():
            self.pruned, self.pruned_at = True, step
            trainer.should_stop = True
