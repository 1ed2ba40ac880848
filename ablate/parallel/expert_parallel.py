"""Expert parallelism applied to a built model: `parallelize` swaps every MoE layer's
routed experts for this rank's shard (`sharded_experts.py`) and keeps the shards out of
DDP's all-reduce; `clip_grad_norm_` clips by the one global norm over all ranks' shards.

The model is built whole on every rank (the same seed draws the same weights everywhere)
and each rank keeps its slice, so a sharded model starts exactly as the single-process one.
"""

from __future__ import annotations

import warnings

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
