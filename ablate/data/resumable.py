"""A train DataLoader that resumes mid-epoch: same batches, same order, as if never stopped.

The order of epoch e is a pure function of (seed, e): `randperm(n, seed + e)`, cut into one
interleaved shard per DDP rank (all shards the same length). The loader follows Lightning's
`_Stateful` protocol (state_dict / load_state_dict): Lightning stores the state in the
checkpoint (`loops.fit_loop.state_dict.combined_loader`) and hands it back on resume, before
the first batch is drawn, so the loader skips the batches already trained on.

Which batches have been *trained on* is not what the loader has *yielded*: Lightning's data
fetcher draws one batch ahead (and worker processes prefetch more). So the position is read
from `consumed()`, a callable the LightningDataModule points at the trainer's count of batches
taken in the current epoch, which is also the count Lightning itself resumes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


class EpochPermutationSampler(Sampler[int]):
    """Indices of a shuffled epoch for one rank; `set_epoch` (called by Lightning) picks the order.

    Epoch e, rank r of w: perm[r::w][:n // w], perm = randperm(n, generator seeded seed + e).
    `start` skips that many indices once (the next `__iter__` only): a resume mid-epoch.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world_size

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's indices of `epoch`, (len(self),) int64."""
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.n, generator=g)[self.rank :: self.world_size][: len(self)]

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.order(self.epoch)[start:].tolist())


class ResumableDataLoader(DataLoader):
    """DataLoader over an EpochPermutationSampler, with Lightning's state_dict / load_state_dict.

    State: {"epoch", "batches"}: the epoch and how many of its batches were consumed. On load,
    a finished epoch (batches == len(self)) resumes at the start of the next one.
    """

    def __init__(self, dataset, *, sampler: EpochPermutationSampler, batch_size: int,
                 consumed: Callable[[], int] | None = None, **kwargs):
        super().__init__(dataset, sampler=sampler, batch_size=batch_size, drop_last=True, **kwargs)
        self.consumed = consumed

    def state_dict(self) -> dict[str, int]:
        if self.consumed is None:
            raise RuntimeError("ResumableDataLoader.state_dict needs `consumed` "
                               "(batches trained on)")
        return {"epoch": self.sampler.epoch, "batches": int(self.consumed())}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = state["epoch"], state["batches"]
        if batches >= len(self):  # saved on the last batch of its epoch
            epoch, batches = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.start = batches * self.batch_size
