"""Write the metrics to MLflow before every checkpoint is written.

A run resumes from its last checkpoint; its curve must reach that far too, or a SIGKILLed
run shows a gap (or nothing) where the checkpoint says training happened. Lightning saves
a step's checkpoint in `on_train_batch_end`, before that step's metrics reach the loggers,
so this hook (called while the checkpoint is assembled, before its file is written) hands
the step's own `train/` values to the loggers itself and flushes them: there is no moment
at which the checkpoint of step N exists and the curve ends before step N. The logger
drops Lightning's own report of those values a moment later (same metric, step and value).
`LMModule` logs train values on logging steps and on every validation (checkpoint) step; values
of an earlier step are never written under the checkpoint's step.
"""

from __future__ import annotations

import lightning as L


class FlushMetrics(L.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        step = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        if getattr(pl_module, "train_logged_step", trainer.global_step) != trainer.global_step:
            step = {}  # an earlier step's values (it logs every few steps): never relabelled
        for logger in trainer.loggers:
            flush = getattr(logger, "flush", None)
            if not callable(flush):
                continue
            if step:
                logger.log_metrics(step, step=trainer.global_step)
            flush()
