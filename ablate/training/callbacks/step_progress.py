"""Advance a rich progress task with the optimizer step (sweeps show one bar per trial)."""

from __future__ import annotations

import lightning as L


class StepProgress(L.Callback):
    def __init__(self, progress, task_id):
        self.progress, self.task_id = progress, task_id

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        desc = f"  step {trainer.global_step}" + (f"  loss {float(loss):.3f}" if loss is not None else "")
        self.progress.update(self.task_id, completed=trainer.global_step, info=desc)
