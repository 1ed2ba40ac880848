"""Test plugin (`--plugin tests.crash_plugin`): with ABLATE_TEST_CRASH_AT=N set, every
process dies (os._exit, no cleanup: a power loss) at the start of training step N; with
ABLATE_TEST_CRASH_RUN_STEPS=M too, only inside a Trainer of a run of M steps (a budget's
cooldown branch, whose Trainer stops at the budget)."""

import os

import lightning as L

from ablate.training import run

CRASH_AT = int(os.environ.get("ABLATE_TEST_CRASH_AT", "0"))
RUN_STEPS = int(os.environ.get("ABLATE_TEST_CRASH_RUN_STEPS", "0"))


class _Crash(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == CRASH_AT:
            os._exit(17)


_real_trainer = run.make_trainer


def _with_crash(cfg, logger, callbacks, *args, **kwargs):
    if RUN_STEPS and cfg.trainer.max_steps != RUN_STEPS:
        return _real_trainer(cfg, logger, callbacks, *args, **kwargs)
    return _real_trainer(cfg, logger, [*callbacks, _Crash()], *args, **kwargs)


if CRASH_AT:
    run.make_trainer = _with_crash
