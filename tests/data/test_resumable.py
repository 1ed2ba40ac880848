"""The resumable train loader: its order is a function of (seed, epoch, rank), and a real
Lightning Trainer resumed from a mid-epoch checkpoint (or one at an epoch's last batch) trains
on exactly the batches an uninterrupted run trains on."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import TensorDataset

from ablate.data.resumable import EpochPermutationSampler, ResumableDataLoader


def test_order_is_a_permutation_per_epoch_and_differs_between_epochs():
    s = EpochPermutationSampler(10, seed=3)
    e0 = list(s)
    assert sorted(e0) == list(range(10))
    assert list(s) == e0  # same epoch, same order
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e1) == list(range(10)) and e1 != e0
    assert list(EpochPermutationSampler(10, seed=4)) != e0


def test_ranks_get_disjoint_equal_shards_of_the_same_permutation():
    n, world = 11, 3
    shards = [list(EpochPermutationSampler(n, seed=0, rank=r, world_size=world))
              for r in range(world)]
    assert all(len(s) == n // world for s in shards)
    flat = [i for s in shards for i in s]
    assert len(set(flat)) == len(flat)
    full = EpochPermutationSampler(n, seed=0).order(0).tolist()
    assert shards[1] == full[1::world][: n // world]


def test_start_skips_once():
    s = EpochPermutationSampler(8, seed=0)
    full = list(s)
    s.start = 5
    assert list(s) == full[5:]
    assert list(s) == full


def test_load_state_dict_positions_the_next_iteration():
    ds = TensorDataset(torch.arange(20))
    loader = ResumableDataLoader(ds, sampler=EpochPermutationSampler(20, seed=1), batch_size=4)
    epoch1 = [b[0].tolist() for b in (loader.sampler.set_epoch(1) or loader)]
    loader.load_state_dict({"epoch": 1, "batches": 3})
    assert [b[0].tolist() for b in loader] == epoch1[3:]
    loader.load_state_dict({"epoch": 1, "batches": len(loader)})  # saved at the epoch's end
    assert loader.sampler.epoch == 2 and len(list(loader)) == len(loader)


def test_state_dict_needs_to_know_what_was_consumed():
    loader = ResumableDataLoader(TensorDataset(torch.arange(8)),
                                 sampler=EpochPermutationSampler(8, seed=0), batch_size=2)
    with pytest.raises(RuntimeError, match="consumed"):
        loader.state_dict()


class _Recorder(L.LightningModule):
    """Records (epoch, batch) for each step; raises at the start of step `crash_at`."""

    def __init__(self, crash_at: int | None = None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.crash_at, self.seen = crash_at, {}

    def training_step(self, batch, batch_idx):
        if self.global_step == self.crash_at:
            raise RuntimeError("crash")
        self.seen[self.global_step] = (self.current_epoch, batch[0].tolist())
        return (self.w * batch[0].float()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class _Data(L.LightningDataModule):
    def train_dataloader(self):
        return ResumableDataLoader(
            TensorDataset(torch.arange(10)), sampler=EpochPermutationSampler(10, seed=7),
            batch_size=3,  # 3 batches per epoch, index 9 never drawn (drop_last)
            consumed=lambda: self.trainer.fit_loop.epoch_loop.batch_progress.current.ready)


def _fit(tmp_path, module, max_steps, ckpt_path=None, every=None):
    from lightning.pytorch.callbacks import ModelCheckpoint

    cb = ([ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0,
                           every_n_train_steps=every)] if every else [])
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=cb, enable_checkpointing=bool(every),
                        use_distributed_sampler=False)
    trainer.fit(module, datamodule=_Data(), ckpt_path=ckpt_path, weights_only=True)


@pytest.mark.parametrize("every", [2, 3], ids=["mid-epoch", "epoch-end"])
def test_lightning_resume_trains_on_the_same_batches(tmp_path, every):
    straight = _Recorder()
    _fit(tmp_path / "a", straight, max_steps=8)
    assert len({e for e, _ in straight.seen.values()}) == 3  # the run crosses 2 epoch boundaries

    crashed = _Recorder(crash_at=every + 1)
    with pytest.raises(RuntimeError, match="crash"):
        _fit(tmp_path / "b", crashed, max_steps=8, every=every)
    resumed = _Recorder()
    _fit(tmp_path / "b", resumed, max_steps=8, ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    assert min(resumed.seen) == every
    assert {**crashed.seen, **resumed.seen} == straight.seen
