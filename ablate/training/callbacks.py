"""The run's small callbacks: throughput, the progress sink, metrics flushed before each
checkpoint, Optuna pruning, the RNG states in checkpoints; and `log_now`, values straight to
the loggers."""

from __future__ import annotations

import math
import time

import lightning as L
import torch


def log_now(trainer, values: dict[str, float | torch.Tensor]) -> None:
    """`values` to every logger at the trainer's step, skipping `LightningModule.log`: it costs
    about a millisecond a call on CPU (its result collection), and periodic diagnostics (~10
    values per MoE layer every n steps) are logged once each and never aggregated. The same
    values at the same step (`global_step`, what Lightning itself passes its loggers), also
    kept in `callback_metrics` (`ablate train`'s summary reads them without a logger)."""
    floats = {k: float(v) for k, v in values.items()}
    for logger in trainer.loggers:
        logger.log_metrics(floats, step=trainer.global_step)
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in floats.items()})


class Throughput(L.Callback):
    """perf/tokens_per_s and perf/step_ms, measured over each logging interval."""

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


def _value(trainer, key: str) -> float | None:
    v = trainer.callback_metrics.get(key)
    return None if v is None else float(v)


class StepProgress(L.Callback):
    """Tells a progress sink (the CLI's sweep display) about each optimizer step and
    validation: any object with `step(global_step, loss)` and `validated(global_step,
    val_loss)` (either value may be None); the sweep code never decides how progress looks."""

    def __init__(self, sink):
        self.sink = sink

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the step's own loss (train/loss is logged every few steps only)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.sink.step(trainer.global_step, None if loss is None else float(loss))

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.sink.validated(trainer.global_step, _value(trainer, "val/loss"))


class FlushMetrics(L.Callback):
    """Writes the metrics to MLflow before every checkpoint is written.

    A run resumes from its last checkpoint; its curve must reach that far too, or a SIGKILLed
    run shows a gap (or nothing) where the checkpoint says training happened. Lightning saves
    a step's checkpoint in `on_train_batch_end`, before that step's metrics reach the
    loggers, so this hook (called while the checkpoint is assembled, before its file is
    written) hands the step's own `train/` values to the loggers itself and flushes them:
    there is no moment at which the checkpoint of step N exists and the curve ends before
    step N. The logger drops Lightning's own report of those values a moment later (same
    metric, step and value). `LMModule` logs train values on logging steps and on every
    validation (checkpoint) step; values of an earlier step are never written under the
    checkpoint's step."""

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


class OptunaPruning(L.Callback):
    """Optuna pruning that reports val/loss on `global_step`: Optuna keeps only the first
    report per step, and a callback reporting on epochs (Lightning's) sees one epoch in a run
    trained by steps. It only records the decision and stops the Trainer cleanly; the caller
    raises `optuna.TrialPruned` after `fit` returns, so Lightning's teardown always runs.
    Under DDP, rank 0 owns the trial and its decision is broadcast, so every rank stops at the
    same step."""

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


class RunState(L.Callback):
    """The random-number generators' states in every checkpoint, restored on resume: a run that
    draws random numbers while training (noisy routers, REINFORCE's samples, jitter, dropout)
    goes on from a checkpoint with the very numbers it would have drawn, as a branch of a wsd
    run does from its branch point. Stored as tensors and lists (a weights-only load reads
    them)."""

    def state_dict(self) -> dict:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss]}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        import random

        import numpy as np

        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
