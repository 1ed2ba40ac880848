"""Test plugin (`--plugin tests.flaky_plugin`): while ABLATE_TEST_FLAKY_EVERY=N is set, every
N-th training run started under the same ABLATE_HOME fails at step 2 with an OSError: a
transient failure (like a full disk or a lost connection) that a retry survives. Inert when
the variable is unset, so importing it in a test process is harmless."""

import os

import lightning as L

from ablate.training import run

started: dict[str, int] = {}


class _Flaky(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            raise OSError("flaky: a simulated transient failure")


_real_trainer = run.make_trainer


def _maybe_flaky(cfg, logger, callbacks, *args, **kwargs):
    every = int(os.environ.get("ABLATE_TEST_FLAKY_EVERY", "0"))
    home = os.environ.get("ABLATE_HOME", "")
    started[home] = started.get(home, 0) + 1
    extra = [_Flaky()] if every and started[home] % every == 0 else []
    return _real_trainer(cfg, logger, [*callbacks, *extra], *args, **kwargs)


if getattr(run.make_trainer, "__name__", "") != "_maybe_flaky":
    run.make_trainer = _maybe_flaky
