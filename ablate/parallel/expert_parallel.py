"""Expert parallelism applied to a built model from outside: `parallelize` swaps every MoE
layer's routed experts for this rank's shard (`sharded_experts.py`) and keeps the shards out
of DDP's all-reduce; the `ExpertParallel` callback clips by the one global norm over all
ranks' shards and keeps checkpoints whole. The LightningModule knows none of it.

The model is built whole on every rank (the same seed draws the same weights everywhere)
and each rank keeps its slice, so a sharded model starts exactly as the single-process one.

Checkpoints hold every expert, whatever the world size. Each rank holds E/W experts under
the same parameter names and only rank 0 writes the checkpoint: left alone it would hold
rank 0's shard, and a resume would give every rank rank 0's experts (and their Adam
moments). So, on every rank (Lightning builds the checkpoint dict on all of them, so
collectives are allowed):
- save: the shards of each expert parameter, in the model state_dict and in the optimizer
  states, are all-gathered into the full (E, ...) tensors (`gather_expert_shards`);
- load: the optimizer states are cut back to this rank's slice (`slice_expert_states`); the
  weights are cut by `ExpertParallelExperts._load_from_state_dict`, which also accepts a
  single-process checkpoint.
The result is an ordinary single-process checkpoint: it resumes on any world size that
divides E, or without expert parallelism.
"""

from __future__ import annotations

import warnings

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

from ablate.errors import ConfigError
from ablate.models.moe.layer import MoELayer
from ablate.parallel.sharded_experts import KEY, ExpertParallelExperts, sharded_params
from ablate.parallel.world import world


def parallelize(module: nn.Module, expert_parallel: bool) -> list[str]:
    """Shard the experts of every MoE layer under `module` when `expert_parallel`
    (`model.moe.expert_parallel`) and the process group has W > 1 ranks; else leave it whole.
    `module`: what DDP will wrap (the LightningModule), before it is wrapped; collective
    (every rank, same order). -> the names of the sharded parameters."""
    w = world()
    if not expert_parallel or not (w.joined and w.size > 1):
        if expert_parallel and w.size > 1:
            warnings.warn(f"{KEY}: the process group is not initialised when the model is "
                          "built; every rank holds all experts", stacklevel=2)
        return []
    for layer in module.modules():
        if isinstance(layer, MoELayer):
            if layer.router.dense_mixture:
                raise ConfigError(KEY, True, "false with a dense-mixture router",
                                  "a dense mixture runs every expert on every slot")
            layer.experts = ExpertParallelExperts.from_full(layer.experts)
    return exclude_from_ddp(module)


def expert_param_names(module: nn.Module) -> list[str]:
    """Fully qualified names (relative to `module`) of the sharded expert parameters."""
    return [name for name, _, _ in sharded_params(module)]


def exclude_from_ddp(module: nn.Module) -> list[str]:
    """Keep the expert shards out of DDP's gradient all-reduce (they differ per rank). Call
    on the module DDP will wrap (the LightningModule) before it is wrapped; -> the names."""
    names = expert_param_names(module)
    if names:
        from torch.nn.parallel import DistributedDataParallel as DDP

        DDP._set_params_and_buffers_to_ignore_for_model(module, names)
    return names


@torch.no_grad()
def clip_grad_norm_(module: nn.Module, max_norm: float) -> torch.Tensor:
    """Global L2 gradient clipping under expert parallelism; collective: every rank calls.

    torch's clip_grad_norm_ on each rank would see different expert shards, so the ranks
    would clip their (replicated, already all-reduced) grads by different factors and the
    replicas would drift apart. Here: |g|^2 = |replicated|^2 + sum over ranks |shards|^2,
    the same on every rank; coef = min(1, max_norm / (|g| + 1e-6)) as in torch."""
    shards = list(sharded_params(module))
    shard_ids = {id(p) for _, p, _ in shards}
    rep, shard = [], []
    for p in module.parameters():
        if p.grad is not None:
            (shard if id(p) in shard_ids else rep).append(p.grad)
    ref = shards[0][1] if shards else next(module.parameters())
    sq_rep, sq_ep = (_sq_sum(gs, ref.device) for gs in (rep, shard))
    if shards:  # every rank, even one without gradients: it is a collective
        dist.all_reduce(sq_ep, group=shards[0][2].group)
    total = (sq_rep + sq_ep).sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in rep + shard:
        g.mul_(coef.to(g.device, g.dtype))
    return total


def _sq_sum(grads: list[torch.Tensor], device) -> torch.Tensor:
    """sum of squares in fp32 on `device` (on the device: no host sync per tensor)."""
    if not grads:
        return torch.zeros((), dtype=torch.float32, device=device)
    return torch.stack([g.detach().float().pow(2).sum().to(device) for g in grads]).sum()


# -- checkpoints -----------------------------------------------------------------------------
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
                lambda v, p, m: (m.gather(v) if isinstance(v, torch.Tensor) and v.shape == p.shape
                                 else v))


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


class ExpertParallel(L.Callback):
    """What a sharded model needs from the Trainer: the global-norm gradient clipping (the
    Trainer's own clipping must be off: it would clip each rank's shards by a different
    factor) and whole checkpoints. Put it after every callback that reads the gradients
    before clipping (`on_before_optimizer_step` runs in the callbacks' order)."""

    def __init__(self, grad_clip: float | None):
        self.grad_clip = grad_clip

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.grad_clip:
            clip_grad_norm_(pl_module, self.grad_clip)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # every rank builds the checkpoint: gather the expert shards (only rank 0 writes it)
        opts = trainer.optimizers
        params = [p for g in opts[0].param_groups for p in g["params"]] if opts else []
        gather_expert_shards(pl_module, checkpoint, params)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # before the optimizer exists: the module's param groups give the order it will have
        groups = pl_module.param_groups()
        slice_expert_states(pl_module, checkpoint, [p for g in groups for p in g["params"]])
