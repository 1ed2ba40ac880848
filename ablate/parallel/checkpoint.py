"""Checkpoints under expert parallelism hold every expert, whatever the world size.

Each rank holds E/W experts under the same parameter names, and only rank 0 writes the
checkpoint: left alone it would hold rank 0's shard, and a resume would give every rank
rank 0's experts (and their Adam moments). So, on every rank (Lightning builds the
checkpoint dict on all of them, so collectives are allowed):

- save: the shards of each expert parameter, in the model state_dict and in the optimizer
  states, are all-gathered into the full (E, ...) tensors (`gather_expert_shards`);
- load: the optimizer states are cut back to this rank's slice (`slice_expert_states`); the
  weights are cut by `ExpertParallelExperts._load_from_state_dict`, which also accepts a
  single-process checkpoint.

The result is an ordinary single-process checkpoint: it resumes on any world size that
divides E, or without expert parallelism.
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.parallel.sharded_experts import sharded_params


def gather_expert_shards(module: nn.Module, checkpoint: dict, params: list[torch.Tensor]) -> None:
    """Collective (every rank of the EP group): shards -> full tensors in `checkpoint`.

    `params`: the optimizer's parameters in its group order (the keys of its state_dict's
    "state"). The per-param state dicts in `checkpoint` are the optimizer's live ones, so they
    are replaced, never changed in place.
    """
    entries = list(sharded_params(module))
    if not entries:
        return
    sd = checkpoint["state_dict"]
    for key, p, m in entries:
        sd[key] = m.gather(p)
    # the same keys on every rank: the same collectives in the same order
    _map_states(checkpoint, entries, params,
                lambda v, p, m: m.gather(v) if isinstance(v, torch.Tensor) and v.shape == p.shape else v)


def slice_expert_states(module: nn.Module, checkpoint: dict, params: list[torch.Tensor]) -> None:
    """Full (E, ...) optimizer states in `checkpoint` -> this rank's slice (no collective).
    `params` as for `gather_expert_shards` (on load Lightning has not built the optimizer
    yet: the LightningModule gives the order its `configure_optimizers` will use)."""
    _map_states(checkpoint, list(sharded_params(module)), params, lambda v, p, m: m.local(v, p))


def _map_states(checkpoint: dict, entries, params: list[torch.Tensor], fn) -> None:
    """Replace each sharded parameter's optimizer state {k: v} by {k: fn(v, param, experts)}."""
    index = {id(q): i for i, q in enumerate(params)}
    for ostate in checkpoint.get("optimizer_states", []):
        for _, p, m in entries:
            i = index.get(id(p))
            state = ostate["state"].get(i) if i is not None else None
            if state:
                ostate["state"][i] = {k: fn(v, p, m) for k, v in state.items()}
