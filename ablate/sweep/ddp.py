"""DDP inside a trial: one Optuna trial trained by several ranks (torchrun / srun).

Rank 0 is an ordinary sweep worker: it asks Optuna for the trial, owns the MLflow run and
the pruning decisions. Before each training run it broadcasts what to train; the other
ranks follow, train the same config as DDP peers (metrics are reduced, pruning is
broadcast by the callback), and stop when rank 0 sends `None` (PITFALLS #6: no rank ever
asks Optuna, so no extra trials).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from ablate.parallel.world import world


def launched_distributed() -> bool:
    """Started as one of several ranks (torchrun / srun), joined or not yet."""
    return world().size > 1


def init(accelerator: str) -> int:
    """Join the process group torchrun described; -> global rank."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
        if gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if gpu else "gloo")
    return world().rank


def finish() -> None:
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


def follow(sweep) -> None:
    """Ranks > 0: train whatever rank 0 announces, until it announces None."""
    from ablate.training.init_weights import prepare_init
    from ablate.training.run import train

    while True:
        msg = share()
        if msg is None:
            return
        cfg = sweep.config_for(msg["values"])
        cfg.trainer.seed, cfg.trainer.progress = msg["seed"], False
        try:
            initial = prepare_init(cfg, experiment=sweep.experiment, tracking_uri=sweep.tracking_uri)
            train(cfg, experiment=sweep.experiment, tracking_uri=sweep.tracking_uri,
                  prune_follower=msg["prune"], ckpt_dir=msg["ckpt"], initial=initial)
        except Exception:  # noqa: BLE001 - rank 0 records the trial's failure
            pass
