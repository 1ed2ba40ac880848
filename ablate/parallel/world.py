"""Which rank this process is, of how many, and joining and leaving the process group: the
one place that asks torch.distributed about the world.

A trial trained by several ranks (torchrun / srun) is an ordinary run on every rank: rank 0
owns the Optuna trial and the MLflow run and `share`s what to train; the other ranks follow
(`ablate.sweep.runner.Sweep.follow`) and never ask Optuna for a trial, so a sweep under
torchrun asks for no extra trials.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    joined: bool  # the default process group is initialised (else: the launcher's promise)


def world() -> World:
    """The default process group's rank and size once it is joined; before that what the
    launcher (torchrun) put in RANK / WORLD_SIZE; else one process of one.

    torch.distributed is only asked if something imported it already (no import of torch
    for the CLI's sake: a group cannot have been joined without it)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), joined=True)
    return World(int(os.environ.get("RANK", "0")),
                 int(os.environ.get("WORLD_SIZE", "1")), joined=False)


def launched_distributed() -> bool:
    """Started as one of several ranks (torchrun / srun), joined or not yet."""
    return world().size > 1


def join(accelerator: str) -> int:
    """Join the process group torchrun described; -> global rank."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
        if gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if gpu else "gloo")
    return world().rank


def leave() -> None:
    """Leave the process group on every rank together (an abrupt interpreter exit with gloo
    threads still running can abort with 'terminate called without an active exception')."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:  # bounded: a peer that died must not hang this exit
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
        else:
            dist.barrier()
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - exiting anyway
        pass


def active() -> bool:
    """In a joined process group of more than one rank."""
    w = world()
    return w.joined and w.size > 1


def share(payload: Any = None) -> Any:
    """Rank 0's `payload` on every rank."""
    import torch.distributed as dist

    box = [payload]
    dist.broadcast_object_list(box, src=0)
    return box[0]
