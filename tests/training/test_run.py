"""One training run ends its MLflow run whatever way it ends: a Ctrl-C that lands after the
run exists but before `trainer.fit` (while the run's params are logged, the Trainer built)
closes it KILLED, never RUNNING (a stale run `ablate doctor` would have to clean up)."""

from __future__ import annotations

import pytest

from ablate.config.load import load_config
from ablate.training import run as run_mod
from ablate.training.run import train
from tests.conftest import TINY
from tests.mlflow_helpers import all_runs


def _interrupt(*_a, **_k):
    raise KeyboardInterrupt("Ctrl-C")


@pytest.mark.parametrize("where", ["on_run", "building the Trainer"])
def test_ctrl_c_between_run_creation_and_fit_ends_the_run_killed(where, ablate_home, monkeypatch):
    cfg = load_config(overrides=list(TINY))
    on_run = None
    if where == "on_run":  # what the sweep does first: record the run id on the trial
        on_run = _interrupt
    else:
        monkeypatch.setattr(run_mod, "make_trainer", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, experiment="ctrlc", on_run=on_run)
    (r,) = all_runs(ablate_home)
    assert r.info.status == "KILLED"
    assert r.data.tags["ablate.state"] == "KILLED"


def test_a_failure_while_the_trainer_is_built_fails_the_run_with_its_reason(ablate_home,
                                                                            monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("no such accelerator")

    monkeypatch.setattr(run_mod, "make_trainer", broken)
    with pytest.raises(RuntimeError):
        train(load_config(overrides=list(TINY)), experiment="broken")
    (r,) = all_runs(ablate_home)
    assert r.info.status == "FAILED"
    assert r.data.tags["ablate.fail_reason"] == "RuntimeError: no such accelerator"


def test_compile_keeps_parameter_names_and_outputs():
    """trainer.compile compiles modules in place: checkpoints and params keep their names,
    and the compiled model computes what the eager one does."""
    import torch

    from ablate.training.module import LMModule
    from ablate.training.run import compile_model

    cfg = load_config(overrides=[*TINY, "model.ffn=moe", "model.vocab_size=256"])
    torch.manual_seed(0)
    eager = LMModule(cfg.model, cfg.optim, 6, cfg.data.block_size)
    compiled = LMModule(cfg.model, cfg.optim, 6, cfg.data.block_size)
    compiled.load_state_dict(eager.state_dict())
    compile_model(compiled)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    x = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)[0], eager(x)[0], rtol=1e-4, atol=1e-5)


def test_a_run_is_closed_even_when_its_last_writes_fail(ablate_home):
    """A flush or tag that fails at the end (a store session broken by the interrupt that
    ends the run) does not leave the run RUNNING; the error is still raised."""
    from ablate.tracking.tracker import RunTracker

    t = RunTracker(None, "closing")
    t.start("r", {}, None, {}, "a: 1\\n")

    def broken(*_a, **_k):
        raise RuntimeError("session inactive")

    t.logger.flush = broken
    with pytest.raises(RuntimeError, match="session inactive"):
        t.end("KILLED", "KILLED")
    (r,) = all_runs(ablate_home)
    assert r.info.status == "KILLED"
