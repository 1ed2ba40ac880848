"""Expert parallelism equals the single-process experts: outputs, input and weight gradients.

Two gloo ranks (spawned once for the whole file: each start imports torch) run every
case and write their tensors to tmp_path; the parent recomputes each case on one process
with the full weights and compares. Gradient convention: a rank's loss is (y_r * w_r).sum();
the reference loss is the SUM over ranks on the concatenated tokens. The EP expert grads
follow the MEAN of rank losses (module docstring), so they are the reference's slice / W;
input and gate grads are the reference's rows exactly.
Legend: T tokens per rank, D width, H expert width, E experts, K slots, W = 2 ranks.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

from ablate.config.load import load_config
from ablate.config.schema import MoEConfig
from ablate.errors import ConfigError
from ablate.models.moe.experts import RoutedExperts
from ablate.models.moe.layer import MoELayer, build_router
from ablate.models.transformer import Transformer
from ablate.parallel.expert_parallel import (
    clip_grad_norm_,
    exclude_from_ddp,
    expert_param_names,
    parallelize,
)
from ablate.parallel.sharded_experts import (
    ExpertParallelExperts,
    groups_per_rank,
    shard_from_full,
    shard_range,
)
from ablate.parallel.world import leave as finish
from tests.dist_helpers import spawn_ranks

W, T, D, H, E, K = 2, 12, 16, 8, 8, 2
B, S = 2, 6  # MoELayer input per rank: T = B*S
LAYER = dict(n_experts=E, top_k=K, d_expert=H, aux={"switch": 0.01, "z": 0.001},
             router={"name": "group_limited", "n_groups": W, "topk_groups": 2})


def full_experts(dispatch: str = "grouped") -> RoutedExperts:
    torch.manual_seed(0)
    experts = RoutedExperts(E, D, H, dispatch)
    experts.reset_parameters(std=0.3)  # O(1) activations so that errors would show
    return experts


def case_inputs(case: str, rank: int):
    """x (T, D), ids (T, K), gates (T, K), w (T, D) of `rank` for one case."""
    g = torch.Generator().manual_seed(100 * rank + len(case))
    x = torch.randn(T, D, generator=g)
    ids = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)])
    if case == "empty":  # expert 1 gets nothing; every row goes to rank 0's experts 0, 2, 3:
        allowed = torch.tensor([0, 2, 3])  # rank 0 sends nothing to rank 1, rank 1 computes nothing
        ids = torch.stack([allowed[torch.randperm(3, generator=g)[:K]] for _ in range(T)])
    if case == "drops":  # capacity drops, one token with every slot dropped
        ids = torch.where(torch.rand(T, K, generator=g) < 0.3, -1, ids)
        ids[0] = -1
    gates = torch.rand(T, K, generator=g) + 0.1
    return x, ids, gates, torch.randn(T, D, generator=g)


CASES = ["random", "empty", "drops", "loop"]


def run_case(experts, x, ids, gates, w):
    x, gates = x.clone().requires_grad_(), gates.clone().requires_grad_()
    y = experts(x, ids, gates)
    (y * w).sum().backward()
    return {"y": y.detach(), "dx": x.grad, "dgates": gates.grad,
            "dw13": experts.w13.grad.clone(), "dw2": experts.w2.grad.clone()}


def worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=W)
    torch.set_num_threads(1)
    res: dict = {}
    try:
        for case in CASES:
            full = full_experts("loop" if case == "loop" else "grouped")
            ep = ExpertParallelExperts(E, D, H, full.dispatch)
            ep.load_state_dict(full.state_dict())  # full checkpoint -> this rank's slice
            res[case] = run_case(ep, *case_inputs(case, rank))
            if case == "random":
                res["norm"] = clip_grad_norm_(ep, 1e9)
                res["gathered"] = ep.gather_full().state_dict()
        try:
            ExpertParallelExperts(3, D, H)
        except ConfigError as e:
            res["error"] = str(e)
        res["layer"] = layer_case(rank, out)
        res["init"] = init_case()
    finally:
        torch.save(res, os.path.join(out, f"rank{rank}.pt"))
        finish()  # leave together: a rank exiting first can abort its peer's gloo threads


def layer_case(rank: int, out: str) -> dict:
    """MoELayer with expert_parallel under DDP (experts excluded) vs the single-process layer."""
    torch.manual_seed(1)
    layer = MoELayer(MoEConfig(**LAYER, expert_parallel=True), D, 4 * H)
    parallelize(layer, layer.cfg.expert_parallel)
    assert isinstance(layer.experts, ExpertParallelExperts)
    full = torch.load(os.path.join(out, "layer.pt"))
    layer.load_state_dict(full)
    names = exclude_from_ddp(layer)
    ddp = torch.nn.parallel.DistributedDataParallel(layer, find_unused_parameters=True)
    x, w = layer_inputs(rank)
    x.requires_grad_()
    y, aux = ddp(x)
    ((y * w).sum() + sum(aux.values())).backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    return {"y": y.detach(), "aux": {k: v.detach() for k, v in aux.items()}, "dx": x.grad,
            "grads": grads, "ignored": names}


def model_cfg(*overrides: str):
    cfg = load_config(overrides=["model.ffn=moe", "model.d_model=16", "model.n_layers=2",
                                 "model.n_heads=2",
                                 "model.d_ff=32", f"model.moe.n_experts={E}", *overrides]).model
    cfg.vocab_size = 40
    return cfg


def init_case() -> dict:
    """A model built whole, then sharded; a shard built directly; the dense-mixture error."""
    torch.manual_seed(3)
    model = Transformer(model_cfg("model.moe.expert_parallel=true"), S)
    rng = torch.get_rng_state()
    names = parallelize(model, True)
    res = {"model": model.state_dict(), "names": names,
           "rng_kept": torch.equal(rng, torch.get_rng_state()),
           "types": [type(m.experts).__name__ for m in model.moe_layers]}
    torch.manual_seed(5)
    res["direct"] = ExpertParallelExperts(E, D, H).state_dict()
    try:
        parallelize(Transformer(model_cfg("model.moe.router.name=soft",
                                          "model.moe.allow_noncausal_routing=true"), S), True)
    except ConfigError as e:
        res["soft_error"] = str(e)
    return res


def layer_inputs(rank: int):
    g = torch.Generator().manual_seed(7 + rank)
    return torch.randn(B, S, D, generator=g), torch.randn(B, S, D, generator=g)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ep")
    torch.manual_seed(1)
    ref_layer = MoELayer(MoEConfig(**LAYER), D, 4 * H)
    with torch.no_grad():  # O(1) activations
        ref_layer.experts.reset_parameters(std=0.3)
        ref_layer.router.weight.normal_(std=0.5)
    torch.save(ref_layer.state_dict(), out / "layer.pt")
    spawn_ranks(worker, out, W)
    return ref_layer, [torch.load(out / f"rank{r}.pt") for r in range(W)]


def close(a, b, msg=""):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=msg)


@pytest.mark.parametrize("case", CASES)
def test_matches_single_process(ranks, case):
    _, res = ranks
    full = full_experts("loop" if case == "loop" else "grouped")
    inputs = [case_inputs(case, r) for r in range(W)]
    x, ids, gates, w = (torch.cat(parts) for parts in zip(*inputs))
    ref = run_case(full, x, ids, gates, w)
    for r in range(W):
        rows, (lo, hi) = slice(r * T, (r + 1) * T), shard_range(E, r, W)
        got = res[r][case]
        for name in ("y", "dx", "dgates"):  # this rank's tokens
            close(got[name], ref[name][rows], f"rank {r} {name}")
        for name in ("dw13", "dw2"):  # this rank's experts, mean-of-rank-losses convention
            close(got[name] * W, ref[name][lo:hi], f"rank {r} {name}")
    if case == "empty":
        assert not res[1][case]["dw13"].any() and not res[0][case]["dw13"][1].any()
    if case == "drops":  # a token with every slot dropped gets nothing and passes no gradient
        assert not res[0][case]["y"][0].any() and not res[0][case]["dx"][0].any()


def test_clip_norm_and_gather(ranks):
    _, res = ranks
    full = full_experts()
    inputs = [case_inputs("random", r) for r in range(W)]
    ref = run_case(full, *(torch.cat(parts) for parts in zip(*inputs)))
    norm = torch.cat([ref["dw13"].flatten(), ref["dw2"].flatten()]).norm() / W
    for r in range(W):
        close(res[r]["norm"], norm)
        for name, t in full.state_dict().items():
            assert torch.equal(res[r]["gathered"][name], t)


def test_moe_layer_under_ddp(ranks):
    """DDP averages the replicated (router) grads of the per-rank losses L_r; the expert
    grads follow the same mean: every grad is the single-process grad of sum_r L_r over W."""
    ref_layer, res = ranks
    ref_layer.zero_grad()
    outs, xs = [], []
    for r in range(W):
        x, w = layer_inputs(r)
        xs.append(x.requires_grad_())
        y, aux = ref_layer(x)  # routing is per token, the aux losses per rank's batch
        outs.append((y, aux))
        ((y * w).sum() + sum(aux.values())).backward()
    ref_grads = {n: p.grad for n, p in ref_layer.named_parameters() if p.grad is not None}
    assert {"router.weight", "experts.w13", "experts.w2"} <= set(ref_grads)
    for r in range(W):
        got, (y, aux), (lo, hi) = res[r]["layer"], outs[r], shard_range(E, r, W)
        assert got["ignored"] == ["experts.w13", "experts.w2"]
        close(got["y"], y.detach(), f"rank {r} y")
        close(got["dx"], xs[r].grad, f"rank {r} dx")
        for k, v in aux.items():
            close(got["aux"][k], v.detach(), f"rank {r} aux {k}")
        assert set(got["grads"]) == set(ref_grads)
        for name, g in ref_grads.items():
            want = g[lo:hi] if name.startswith("experts.") else g
            close(got["grads"][name] * W, want, f"rank {r} {name}")


def test_shards_and_config_errors(ranks):
    _, res = ranks
    assert "divisible by the world size 2" in res[0]["error"]
    full = full_experts()
    parts = [shard_from_full(full, r, W) for r in range(W)]
    assert torch.equal(torch.cat([p.w13 for p in parts]), full.w13)
    assert torch.equal(torch.cat([p.w2 for p in parts]), full.w2)
    with pytest.raises(ConfigError):
        shard_from_full(full, 0, 3)


def test_group_limited_groups_are_rank_shards():
    """n_groups == W: group g's experts are rank g's shard, so topk_groups=1 sends every
    token's K rows to one rank."""
    n_groups = W
    assert groups_per_rank(n_groups, W) == 1 and groups_per_rank(4, W) == 2
    assert groups_per_rank(3, W) is None
    for g in range(n_groups):
        group_experts = range(g * E // n_groups, (g + 1) * E // n_groups)
        assert range(*shard_range(E, g, W)) == group_experts
    torch.manual_seed(0)
    cfg = {"name": "group_limited", "n_groups": n_groups, "topk_groups": 1}
    router = build_router(cfg, D, E, K)
    ids = router(torch.randn(64, D)).ids_TK
    owner = ids // (E // W)
    assert (owner == owner[:, :1]).all()


def test_single_process_builds_plain_experts():
    layer = MoELayer(MoEConfig(**LAYER, expert_parallel=True), D, 4 * H)
    parallelize(layer, layer.cfg.expert_parallel)  # no process group: nothing to shard over
    assert type(layer.experts) is RoutedExperts and expert_param_names(layer) == []


def test_sharded_init_is_the_single_process_init(ranks):
    """A model built whole and then sharded starts as the single-process model for the same
    seed (each rank: its slice), and sharding draws no random number; a shard built directly
    draws the full tensors and keeps its slice, the same numbers."""
    _, res = ranks
    torch.manual_seed(3)
    ref = Transformer(model_cfg("model.moe.expert_parallel=true"), S).state_dict()
    torch.manual_seed(5)
    direct = RoutedExperts(E, D, H).state_dict()
    for r in range(W):
        got, (lo, hi) = res[r]["init"], shard_range(E, r, W)
        assert got["rng_kept"] and got["types"] == ["ExpertParallelExperts"] * 2
        assert got["names"] == [f"blocks.{i}.ffn.experts.{w}" for i in range(2)
                                for w in ("w13", "w2")]
        assert got["model"].keys() == ref.keys()
        for name, t in ref.items():
            assert torch.equal(got["model"][name],
                               t[lo:hi] if ".experts." in name else t), (r, name)
        for name, t in direct.items():
            assert torch.equal(got["direct"][name], t[lo:hi]), (r, name)
        assert "dense-mixture router" in got["soft_error"]
