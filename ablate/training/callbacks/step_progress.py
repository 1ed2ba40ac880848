"""Tell a progress sink (the CLI's sweep display) about each optimizer step and validation.

The sink is any object with `step(global_step, loss)` and `validated(global_step, val_loss)`
(`loss`/`val_loss` may be None); the sweep code never decides how progress looks.
"""

from __future__ import annotations

import lightning as L


def _value(trainer, key: str) -> float | None:
    v = trainer.callback_metrics.get(key)
    return None if v is None else float(v)


class StepProgress(L.Callback):
    def __init__(self, sink):
        self.sink = sink

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the step's own loss (train/loss is logged every few steps only)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.sink.step(trainer.global_step, None if loss is None else float(loss))

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.sink.validated(trainer.global_step, _value(trainer, "val/loss"))
