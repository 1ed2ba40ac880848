"""Determinism on CPU: the same config and seed give bit-identical `val/loss`; a run interrupted
and resumed from its checkpoint ends with the same final metrics as an uninterrupted one."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from ablate.cli import main
from ablate.config.load import load_config
from ablate.training import run as run_mod
from ablate.training.run import train
from tests.mlflow_helpers import all_runs, store

CKPT_EVERY = 3  # trainer.val_every: ModelCheckpoint(every_n_train_steps=val_every)


def _history(home, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in store(home).get_metric_history(run_id, key))


def test_same_config_and_seed_give_bit_identical_val_loss(ablate_home, tiny):
    argv = ["train", "model.ffn=moe", "model.moe.n_experts=4", "model.moe.top_k=2", *tiny]
    assert main(argv) == 0
    assert main(argv) == 0
    a, b = sorted(all_runs(ablate_home), key=lambda r: r.info.start_time)
    # exact float equality, at every validation, not only the last one
    assert (_history(ablate_home, a.info.run_id, "val/loss")
            == _history(ablate_home, b.info.run_id, "val/loss"))
    assert a.data.metrics["val/loss"] == b.data.metrics["val/loss"]
    assert a.data.metrics["train/loss"] == b.data.metrics["train/loss"]
    # and a different seed really is different (the comparison above is not vacuous)
    assert main([*argv, "trainer.seed=1"]) == 0
    c = max(all_runs(ablate_home), key=lambda r: r.info.start_time)
    assert c.data.metrics["val/loss"] != a.data.metrics["val/loss"]


class _Probe(L.Callback):
    """Records the batch each step trains on and a copy of the weights and optimizer state at
    the start of step `snap_at`; raises at the start of step `crash_at` (after the checkpoint
    of step crash_at - 1 ... every CKPT_EVERY steps)."""

    def __init__(self, snap_at: int | None = None, crash_at: int | None = None):
        self.snap_at, self.crash_at = snap_at, crash_at
        self.batches: dict[int, torch.Tensor] = {}
        self.weights: dict[str, torch.Tensor] | None = None
        self.optim: dict | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = trainer.global_step
        if step == self.crash_at:
            raise RuntimeError(f"simulated crash at step {step}")
        self.batches[step] = batch[0].clone()
        if step == self.snap_at:
            self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            self.optim = copy.deepcopy(trainer.optimizers[0].state_dict()["state"])


def _train(monkeypatch, cfg, ckpt, probe: _Probe):
    real = run_mod.make_trainer

    def with_probe(cfg_, logger, callbacks, *args, **kwargs):
        return real(cfg_, logger, [*callbacks, probe], *args, **kwargs)

    monkeypatch.setattr(run_mod, "make_trainer", with_probe)
    try:
        return train(cfg, experiment="det", ckpt_dir=ckpt)
    finally:
        monkeypatch.setattr(run_mod, "make_trainer", real)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """An uninterrupted run, and the same run crashed at step 4 and resumed from the step-3
    checkpoint (max_steps 6, a checkpoint every 3 steps): (straight, resumed, their probes)."""
    from tests.conftest import TINY

    base = tmp_path_factory.mktemp("resume")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATE_HOME", str(base / "ablate-runs"))
        cfg = load_config(overrides=["model.ffn=moe", "model.moe.n_experts=4", *TINY])
        assert cfg.trainer.val_every == CKPT_EVERY and cfg.trainer.max_steps == 2 * CKPT_EVERY
        p_straight = _Probe(snap_at=CKPT_EVERY)
        straight = _train(mp, cfg, base / "straight", p_straight)
        ckpt = base / "resumed"
        with pytest.raises(RuntimeError, match="simulated crash"):
            _train(mp, cfg, ckpt, _Probe(crash_at=CKPT_EVERY + 1))
        assert (ckpt / "last.ckpt").is_file()
        p_resumed = _Probe(snap_at=CKPT_EVERY)
        resumed = _train(mp, cfg, ckpt, p_resumed)
        runs = {r.info.run_id: r for r in all_runs(base / "ablate-runs")}
    assert runs[resumed.run_id].data.tags["ablate.resumed_from"].endswith("last.ckpt")
    return straight, resumed, p_straight, p_resumed


def test_resume_restores_weights_and_optimizer_exactly(interrupted):
    _, _, p_straight, p_resumed = interrupted
    assert min(p_resumed.batches) == CKPT_EVERY  # it went on from the checkpoint's step
    assert p_resumed.weights.keys() == p_straight.weights.keys()
    for k, v in p_straight.weights.items():
        assert torch.equal(v, p_resumed.weights[k]), k
    assert p_resumed.optim.keys() == p_straight.optim.keys()
    for i, state in p_straight.optim.items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(p_resumed.optim[i][k])), (i, k)


def test_resumed_run_ends_with_the_same_metrics_as_an_uninterrupted_one(interrupted):
    straight, resumed, p_straight, p_resumed = interrupted
    for step, batch in p_resumed.batches.items():
        assert torch.equal(batch, p_straight.batches[step]), f"different data at step {step}"
    assert resumed.metrics["val/loss"] == straight.metrics["val/loss"]
    assert resumed.metrics["train/loss"] == straight.metrics["train/loss"]
