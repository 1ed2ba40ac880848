"""Periodic diagnostics straight to the loggers, at the trainer's step.

`LightningModule.log` costs about a millisecond a call on CPU (its result collection);
the routing statistics are ~10 values per MoE layer every n steps, logged once each and
never aggregated, so they skip it: the same values at the same step (`global_step`,
what Lightning itself passes its loggers), a fraction of the cost. Also kept where the
trainer's `callback_metrics` are read (`ablate train`'s summary without a logger).
"""

from __future__ import annotations

import torch


def log_now(trainer, values: dict[str, float | torch.Tensor]) -> None:
    floats = {k: float(v) for k, v in values.items()}
    for logger in trainer.loggers:
        logger.log_metrics(floats, step=trainer.global_step)
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in floats.items()})
