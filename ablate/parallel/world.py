"""Which rank this process is, of how many: the one place that asks."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


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
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), joined=False)
