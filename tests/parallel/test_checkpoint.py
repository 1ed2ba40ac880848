"""Checkpoints under expert parallelism: two gloo ranks write one checkpoint holding all E
experts (weights and Adam moments), and both ranks resume from it their own shard exactly.
Only rank 0's file is read back, as with Lightning (only global rank 0 writes)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from ablate.parallel.expert_parallel import gather_expert_shards, slice_expert_states
from ablate.parallel.sharded_experts import ExpertParallelExperts, shard_range
from ablate.parallel.world import leave as finish
from tests.dist_helpers import spawn_ranks

W, T, D, H, E, K = 2, 10, 8, 4, 4, 2


def _model(seed: int) -> tuple[nn.Module, torch.optim.Optimizer, list[torch.Tensor]]:
    torch.manual_seed(seed)
    m = nn.Module()
    m.lin = nn.Linear(D, D)  # replicated
    m.experts = ExpertParallelExperts(E, D, H)
    m.experts.reset_parameters(std=0.3)
    params = [m.lin.weight, m.experts.w13, m.lin.bias, m.experts.w2]  # experts amid the others
    return m, torch.optim.AdamW([{"params": params[:2]}, {"params": params[2:]}], lr=0.1), params


def _step(m, opt, rank: int) -> None:
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(T, D, generator=g)
    ids = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)])
    opt.zero_grad()
    m.experts(m.lin(x), ids, torch.rand(T, K, generator=g)).square().sum().backward()
    for p in m.lin.parameters():  # what DDP does for replicated parameters
        dist.all_reduce(p.grad)
        p.grad /= W
    opt.step()


def worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=W)
    torch.set_num_threads(1)
    res: dict = {}
    try:
        m, opt, params = _model(0)
        for _ in range(2):
            _step(m, opt, rank)
        res["shard"] = {n: p.detach().clone() for n, p in m.named_parameters()}
        res["moments"] = {n: {k: v.clone() for k, v in opt.state[p].items()}
                          for n, p in m.named_parameters()}
        ckpt = {"state_dict": m.state_dict(), "optimizer_states": [opt.state_dict()]}
        gather_expert_shards(m, ckpt, params)
        res["live_unchanged"] = all(torch.equal(opt.state[p][k], v) for n, p in m.named_parameters()
                                    for k, v in res["moments"][n].items())
        if rank == 0:
            torch.save(ckpt, os.path.join(out, "ckpt.pt"))
        dist.barrier()
        loaded = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
        m2, opt2, params2 = _model(1)  # other weights: the load must overwrite all of them
        slice_expert_states(m2, loaded, params2)
        m2.load_state_dict(loaded["state_dict"])
        opt2.load_state_dict(loaded["optimizer_states"][0])
        res["restored"] = {n: p.detach().clone() for n, p in m2.named_parameters()}
        res["restored_moments"] = {n: {k: v.clone() for k, v in opt2.state[p].items()}
                                   for n, p in m2.named_parameters()}
        _step(m, opt, rank)  # and training goes on identically from either
        _step(m2, opt2, rank)
        res["next_equal"] = all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))
    finally:
        torch.save(res, os.path.join(out, f"rank{rank}.pt"))
        finish()  # leave together: a rank exiting first can abort its peer's gloo threads


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("epckpt")
    spawn_ranks(worker, out, W)
    return (torch.load(out / "ckpt.pt", weights_only=True),
            [torch.load(out / f"rank{r}.pt") for r in range(W)])


def test_checkpoint_holds_every_expert_and_its_moments(ranks):
    ckpt, res = ranks
    sd, state = ckpt["state_dict"], ckpt["optimizer_states"][0]["state"]
    for i, name in ((1, "experts.w13"), (3, "experts.w2")):  # the params' optimizer indices
        assert sd[name].shape[0] == E
        assert torch.equal(sd[name], torch.cat([res[r]["shard"][name] for r in range(W)]))
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[i][k],
                               torch.cat([res[r]["moments"][name][k] for r in range(W)]))
    assert torch.equal(sd["lin.weight"], res[0]["shard"]["lin.weight"])
    assert all(r["live_unchanged"] for r in res)  # gathering never touched the live optimizer


def test_every_rank_resumes_its_own_shard_exactly(ranks):
    _, res = ranks
    for r in range(W):
        lo, hi = shard_range(E, r, W)
        assert (lo, hi) == (r * E // W, (r + 1) * E // W)
        for name, p in res[r]["shard"].items():
            assert torch.equal(res[r]["restored"][name], p), (r, name)
            for k, v in res[r]["moments"][name].items():
                assert torch.equal(res[r]["restored_moments"][name][k], v), (r, name, k)
        assert res[r]["next_equal"]
