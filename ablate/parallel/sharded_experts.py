"""The E routed experts sharded over the W ranks of a process group (expert parallelism).

Legend: T tokens on this rank, D model width, H expert width, K slots per token, E experts
in all, El = E/W experts per rank, W ranks, N = T*K assignments, n of them kept (not -1)
and sent, m rows received from all ranks.

Rank r holds experts [r*El, (r+1)*El) as the `w13` (El, D, 2H) and `w2` (El, H, D) of a
`RoutedExperts` (same parameter names as the single-process layer). A forward:
  1. sort this rank's assignments by expert (dropped ids -1 last, left out); the owner of
     expert e is rank e // El, so the sorted rows come out grouped by destination rank;
  2. all_to_all the per-expert counts (E,) = (W, El): each rank learns how many rows every
     source sends to each of its local experts (so the local ids need not travel);
  3. all_to_all the token rows (differentiable: the backward is the reverse all_to_all);
  4. run the local experts on the m received rows with K=1 and gates of 1
     (`RoutedExperts.forward`: the same kernels, no expert maths here);
  5. all_to_all the m results back to where their rows came from;
  6. gate them at the origin and scatter-add into the tokens.
Memory O(N*D) per rank; an expert (or a rank) with no tokens is an empty split.

Gradient convention. DDP averages the replicated parameters' gradients over ranks, i.e.
follows the MEAN of the per-rank losses. The backward of step 5 carries every rank's dy to
the expert's owner, so a local expert's gradient would be the SUM of all ranks' losses'
gradients, W times too large. The backward of step 5 therefore scales dy by 1/W (expert
gradients follow the mean of rank losses, like everything else) and the backward of step 3
scales the returning dx by W (the input gradient of each rank stays d(own loss)/dx). This
lives in the graph instead of a tensor hook on the parameters because hooks do not survive
pickling (ddp_spawn) and are easy to register twice. The expert parameters must be kept
out of DDP's all-reduce (they differ per rank): `expert_parallel.exclude_from_ddp`.

The collectives run on a dedicated process group (`ep_group`): in the backward they
interleave with DDP's asynchronous bucket all-reduces, whose issue order can differ
between ranks (unused parameters are marked ready early), and two streams of collectives
on one group must be issued in the same order everywhere.

Device-limited routing (DeepSeek-V2; a router's `device_groups` (G, M)): the G groups are
contiguous runs of E/G experts, and shards are contiguous runs of E/W. With G == W group g
is exactly rank g's shard (with W | G rank r holds groups r*G/W ..), so M bounds how many
ranks a token's rows are sent to (<= M).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from ablate.errors import ConfigError
from ablate.models.moe.experts import RoutedExperts, sort_by_expert
from ablate.parallel.world import world

KEY = "model.moe.expert_parallel"
_GROUPS: dict[int, dist.ProcessGroup] = {}  # id(default group) -> its EP group


def shard_range(n_experts: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi): the experts rank `rank` of `world` holds."""
    if n_experts % world:
        raise ConfigError(KEY, True, f"n_experts divisible by the world size {world}",
                          f"{n_experts} experts cannot be split evenly over {world} ranks")
    n_local = n_experts // world
    return rank * n_local, (rank + 1) * n_local


def groups_per_rank(groups: int, world: int) -> int | None:
    """Whole routing groups per rank when they align with the shards (W divides G), else None."""
    return groups // world if groups % world == 0 else None


def ep_group() -> dist.ProcessGroup:
    """All ranks of the default group, as a group of their own (collective on first call)."""
    default = dist.group.WORLD
    if id(default) not in _GROUPS:
        _GROUPS.clear()  # a re-initialised default group: the old EP group is gone with it
        _GROUPS[id(default)] = dist.new_group(ranks=list(range(world().size)))
    return _GROUPS[id(default)]


class _AllToAll(torch.autograd.Function):
    """Rows (sum(in_splits), ...) -> (sum(out_splits), ...); backward: the reverse exchange
    of the gradient, times `grad_scale` (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, out_splits: list[int], in_splits: list[int], group, grad_scale: float):
        ctx.splits, ctx.group, ctx.grad_scale = (out_splits, in_splits), group, grad_scale
        out = x.new_empty((sum(out_splits), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), out_splits, in_splits, group=group)
        return out

    @staticmethod
    def backward(ctx, dy):
        out_splits, in_splits = ctx.splits
        dx = dy.new_empty((sum(in_splits), *dy.shape[1:]))
        dist.all_to_all_single(dx, dy.contiguous(), in_splits, out_splits, group=ctx.group)
        if ctx.grad_scale != 1.0:
            dx.mul_(ctx.grad_scale)
        return dx, None, None, None, None


class ExpertParallelExperts(RoutedExperts):
    """This rank's E/W experts; forward takes and returns this rank's tokens, like
    `RoutedExperts`: x (T, D), ids (T, K) in [0, E) or -1, gates (T, K) -> y (T, D).
    Every rank of the group must call forward (and backward) the same number of times."""

    def __init__(self, n_experts: int, d_model: int, d_hidden: int, dispatch: str = "grouped",
                 group: dist.ProcessGroup | None = None):
        group = group if group is not None else ep_group()
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        self.expert_lo, self.expert_hi = shard_range(n_experts, rank, world)
        # plain attributes may be set before Module.__init__; reset_parameters needs them
        self.n_experts_global, self.rank, self.world, self.group = n_experts, rank, world, group
        super().__init__(n_experts // world, d_model, d_hidden, dispatch)

    @classmethod
    def from_full(cls, full: RoutedExperts, group: dist.ProcessGroup | None = None):
        """This rank's slice of `full`'s weights (copies; no random number drawn, so a model
        built whole and then sharded starts exactly as the single-process one)."""
        group = group if group is not None else ep_group()  # a collective: not on meta
        with torch.device("meta"):  # no RNG, no memory: the weights come from `full`
            ep = cls(full.n_experts, full.w13.shape[1], full.d_hidden, full.dispatch, group)
        part = shard_from_full(full, ep.rank, ep.world)
        ep.w13, ep.w2 = part.w13, part.w2
        for p, q in ((ep.w13, full.w13), (ep.w2, full.w2)):
            p.requires_grad_(q.requires_grad)
        ep.dropout = full.dropout
        return ep.train(full.training)

    def reset_parameters(self, std: float = 0.02, w2_std: float | None = None) -> None:
        """Draw the full (E, ...) tensors and keep this rank's slice: the same RNG stream
        as the single-process layer (equal init for equal seeds; shards never repeat)."""
        with torch.no_grad():
            for w, s in ((self.w13, std), (self.w2, std if w2_std is None else w2_std)):
                full = torch.empty(self.full_shape(w), dtype=w.dtype, device=w.device)
                w.copy_(self.local(nn.init.normal_(full, std=s), w))

    def full_shape(self, w: torch.Tensor) -> tuple[int, ...]:
        return (self.n_experts_global, *w.shape[1:])

    def local(self, t, like: torch.Tensor):
        """This rank's rows of `t` when it is a full (E, ...) counterpart of the parameter
        `like` (its weights, its Adam moments); anything else unchanged."""
        if (isinstance(t, torch.Tensor) and t.dim() == like.dim()
                and t.shape[0] == self.n_experts_global):
            return t[self.expert_lo:self.expert_hi]
        return t

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """(El, ...) of every rank -> (E, ...) on every rank (collective)."""
        t = t.detach().contiguous()
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t, group=self.group)
        return torch.cat(parts)

    def forward(self, x_TD: torch.Tensor, ids_TK: torch.Tensor, gates_TK: torch.Tensor):
        (T, K), D = ids_TK.shape, x_TD.shape[1]
        E, El, W = self.n_experts_global, self.n_experts, self.world
        dev = x_TD.device.type
        if torch.is_autocast_enabled(dev):  # send the compute dtype (half the bytes in bf16)
            x_TD = x_TD.to(torch.get_autocast_dtype(dev))
        order_N, counts_E, _ = sort_by_expert(ids_TK, E)  # by expert = by destination rank
        recv_E = torch.empty_like(counts_E)  # (W, El): source s -> my local expert j
        dist.all_to_all_single(recv_E, counts_E, group=self.group)
        send_W = counts_E.view(W, El).sum(1).tolist()  # host sync: the split sizes
        recv_W = recv_E.view(W, El).sum(1).tolist()
        order_n = order_N[: sum(send_W)]  # kept assignments, dropped (-1) tail cut off
        token_n = order_n // K
        # dx of the rows comes back scaled by W, undoing the 1/W applied to dy below
        x_mD = _AllToAll.apply(x_TD.index_select(0, token_n), recv_W, send_W, self.group, float(W))
        local_m = torch.arange(El, device=x_TD.device).repeat(W).repeat_interleave(recv_E)
        ones_m1 = x_mD.new_ones(x_mD.shape[0], 1)
        y_mD = super().forward(x_mD, local_m.unsqueeze(1), ones_m1)  # (m, D), ungated
        # dy / W on the way to the owner: expert grads follow the mean of the rank losses
        y_nD = _AllToAll.apply(y_mD, send_W, recv_W, self.group, 1.0 / W)
        g_n1 = gates_TK.reshape(-1).index_select(0, order_n).to(y_nD.dtype).unsqueeze(1)
        return y_nD.new_zeros(T, D).index_add(0, token_n, y_nD * g_n1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint holds all E experts (ours gather them, a single-process one has them)
        for name in ("w13", "w2"):
            if prefix + name in state_dict:
                state_dict[prefix + name] = self.local(state_dict[prefix + name],
                                                       getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def gather_full(self) -> RoutedExperts:
        """All E experts as a single-process `RoutedExperts` on every rank (collective)."""
        full = _empty_like_experts(self.n_experts_global, self)
        full.w13, full.w2 = nn.Parameter(self.gather(self.w13)), nn.Parameter(self.gather(self.w2))
        return full


def _empty_like_experts(n_experts: int, like: RoutedExperts) -> RoutedExperts:
    """A RoutedExperts of `like`'s sizes whose weights the caller sets (meta: no RNG used)."""
    with torch.device("meta"):
        return RoutedExperts(n_experts, like.w13.shape[1], like.d_hidden, like.dispatch)


def shard_from_full(full: RoutedExperts, rank: int, world: int) -> RoutedExperts:
    """Rank `rank`'s E/W experts of `full` as a plain `RoutedExperts` (copies)."""
    lo, hi = shard_range(full.n_experts, rank, world)
    shard = _empty_like_experts(hi - lo, full)
    shard.w13 = nn.Parameter(full.w13.detach()[lo:hi].clone())
    shard.w2 = nn.Parameter(full.w2.detach()[lo:hi].clone())
    return shard


def sharded_params(module: nn.Module) -> Iterator[tuple[str, nn.Parameter, ExpertParallelExperts]]:
    """(name relative to `module`, parameter, its sharded experts) of every expert shard."""
    for name, m in module.named_modules():
        if isinstance(m, ExpertParallelExperts):
            for p_name, p in m.named_parameters(recurse=False):
                yield (f"{name}.{p_name}" if name else p_name), p, m
