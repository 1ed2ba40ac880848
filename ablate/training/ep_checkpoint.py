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
import torch.distributed as dist
from torch import nn

from ablate.models.moe.expert_parallel import ExpertParallelExperts, expert_parallel_modules


def _expert_params(module: nn.Module):
    """(state_dict key, parameter, its ExpertParallelExperts) for every sharded parameter."""
    for name, m in expert_parallel_modules(module).items():
        for pname, p in m.named_parameters(recurse=False):
            yield (f"{name}.{pname}" if name else pname), p, m


def _gather(t: torch.Tensor, m: ExpertParallelExperts) -> torch.Tensor:
    t = t.detach().contiguous()
    parts = [torch.empty_like(t) for _ in range(m.world)]
    dist.all_gather(parts, t, group=m.group)
    return torch.cat(parts)


def _is_per_expert(v, p: torch.Tensor) -> bool:
    """An optimizer state tensor shaped like the parameter (Adam's moments; not `step`)."""
    return isinstance(v, torch.Tensor) and v.shape == p.shape


def gather_expert_shards(module: nn.Module, checkpoint: dict, params: list[torch.Tensor]) -> None:
    """Collective (every rank of the EP group): shards -> full tensors in `checkpoint`.

    `params`: the optimizer's parameters in its group order (the keys of its state_dict's
    "state"). The per-param state dicts in `checkpoint` are the optimizer's live ones, so they
    are replaced, never changed in place.
    """
    entries = list(_expert_params(module))
    if not entries:
        return
    sd = checkpoint["state_dict"]
    for key, p, m in entries:
        sd[key] = _gather(p, m)
    index = {id(q): i for i, q in enumerate(params)}
    for ostate in checkpoint.get("optimizer_states", []):
        for _, p, m in entries:
            i = index.get(id(p))
            state = ostate["state"].get(i) if i is not None else None
            if state:  # the same keys on every rank: the same collectives in the same order
                ostate["state"][i] = {k: _gather(v, m) if _is_per_expert(v, p) else v
                                      for k, v in state.items()}


def slice_expert_states(module: nn.Module, checkpoint: dict, params: list[torch.Tensor]) -> None:
    """Full (E, ...) optimizer states in `checkpoint` -> this rank's slice (no collective).
    `params` as for `gather_expert_shards` (on load Lightning has not built the optimizer
    yet: the LightningModule gives the order its `configure_optimizers` will use)."""
    entries = list(_expert_params(module))
    if not entries:
        return
    index = {id(q): i for i, q in enumerate(params)}
    for ostate in checkpoint.get("optimizer_states", []):
        for _, p, m in entries:
            i = index.get(id(p))
            state = ostate["state"].get(i) if i is not None else None
            if not state:
                continue
            ostate["state"][i] = {
                k: v[m.expert_lo:m.expert_hi] if (isinstance(v, torch.Tensor) and v.dim() == p.dim()
                                                  and v.shape[0] == m.n_experts_global) else v
                for k, v in state.items()}
