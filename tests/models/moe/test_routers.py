"""Every registered router: the RouterOutput contract, gradients, and each router's own maths.

Parametrized over `ROUTERS.names()`, so a new router is tested the moment it registers.
Legend: T tokens, D width, E experts, K slots per token.
"""

from __future__ import annotations

import math

import pytest
import torch

from ablate.config.load import load_config
from ablate.errors import ConfigError
from ablate.losses.aux import AuxContext
from ablate.models.moe.layer import build_router
from ablate.registry import AUX_LOSSES, ROUTERS

B, S, D, E = 2, 16, 16, 8
T = B * S
PROB_LOSSES = ("switch", "importance", "seq_aux", "device", "comm")
# expert choice gives every expert exactly C tokens: f is uniform, so these losses are
# E * sum_i (1/E) P_i = 1 (or its per-device analogue) whatever the weights: zero gradient
CONSTANT = {("expert_choice", "switch"), ("expert_choice", "device")}
MAY_SKIP_TOKENS = {"expert_choice"}  # Zhou et al. 2022: a token may be taken by no expert


def top_k(name: str) -> int:
    return 1 if name == "base" else 2  # BASE layers route to one expert


def make(name: str, k: int | None = None, **opts):
    torch.manual_seed(0)
    k = top_k(name) if k is None else k
    return build_router({"name": name, "init_std": 0.5, **opts}, D, E, k)


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, D, generator=g), torch.randint(0, 256, (T,), generator=g)


def route(router, training: bool = True, seed: int = 1):
    router.train(training)
    x_TD, ids_T = inputs(seed)
    torch.manual_seed(2)
    return router(x_TD, token_ids_T=ids_T)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", ROUTERS.names())
def test_output_contract(name, training):
    out = route(make(name), training)
    assert out.ids_TK.dtype == torch.int64 and out.gates_TK.dtype == torch.float32
    assert out.ids_TK.ndim == 2 and out.ids_TK.shape[0] == T
    assert out.gates_TK.shape == out.ids_TK.shape
    assert torch.isfinite(out.gates_TK).all()
    assert ((out.ids_TK >= -1) & (out.ids_TK < E)).all()
    assert (out.gates_TK[out.ids_TK < 0] == 0).all(), "an empty slot must carry no weight"
    if name not in MAY_SKIP_TOKENS:
        assert (out.ids_TK >= 0).any(dim=-1).all(), "every token reaches an expert"
    for t in range(T):  # no expert twice in one token's slots
        kept = out.ids_TK[t][out.ids_TK[t] >= 0]
        assert kept.unique().numel() == kept.numel()
    for tensor in (out.logits_TE, out.probs_TE):
        if tensor is not None:
            assert tensor.shape == (T, E) and tensor.dtype == torch.float32
            assert torch.isfinite(tensor).all()
    if out.probs_TE is not None:
        torch.testing.assert_close(out.probs_TE.sum(-1), torch.ones(T))


def test_router_configs_load():
    for name in ROUTERS.names():
        moe = {"router": {"name": name}, "top_k": top_k(name), "allow_noncausal_routing": True}
        if "probs_TE" not in make(name).gives:
            moe["aux"] = {"switch": 0.0, "z": 0.0}
        cfg = load_config(base={"model": {"ffn": "moe", "moe": moe}})
        assert isinstance(cfg.model.moe.router, ROUTERS.get(name).config)


@pytest.mark.parametrize("name", [n for n in ROUTERS.names() if n != "hash"])
def test_gates_reach_router_weight(name):
    router = make(name)
    out = route(router)
    w_TK = torch.randn(out.gates_TK.shape, generator=torch.Generator().manual_seed(3))
    (out.gates_TK * w_TK).sum().backward()  # random weights: normalised gates sum to a constant
    assert router.weight.grad is not None and torch.isfinite(router.weight.grad).all()
    assert router.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", sorted(AUX_LOSSES.names()))
@pytest.mark.parametrize("name", [n for n in ROUTERS.names() if n != "hash"])
def test_aux_losses_reach_router_weight(name, loss):
    router = make(name)
    out = route(router)
    value = AUX_LOSSES.get(loss).obj(AuxContext(out, E, (B, S), n_devices=2))
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    grad = router.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    if (name, loss) in CONSTANT:
        assert grad.abs().max() < 1e-5
    else:
        assert grad.abs().sum() > 0, f"{loss} does not reach {name}'s router weight"


def test_hash_router_learns_nothing_and_refuses_prob_losses():
    router = make("hash")
    out = route(router)
    assert out.logits_TE is None and out.probs_TE is None
    assert not out.gates_TK.requires_grad
    torch.testing.assert_close(out.gates_TK, torch.full((T, 2), 0.5))
    for loss in AUX_LOSSES.names():
        with pytest.raises(ValueError, match="needs router"):
            AUX_LOSSES.get(loss).obj(AuxContext(out, E, (B, S)))
    assert list(router.parameters()) == [] and router.learns_from == "nothing"  # no weight at all


def test_hash_is_a_fixed_balanced_function_of_the_token_id():
    router = make("hash", k=3)
    ids_T = torch.arange(4096)
    a = router(torch.randn(4096, D), token_ids_T=ids_T).ids_TK
    b = router(torch.randn(4096, D), token_ids_T=ids_T).ids_TK  # other inputs, same ids
    assert torch.equal(a, b)
    for k in range(3):
        load = torch.bincount(a[:, k], minlength=E).float()
        assert load.max() / load.mean() < 1.15, load  # balanced over the vocabulary
    with pytest.raises(ValueError, match="token ids"):
        router(torch.randn(4, D))


def test_topk_softmax_equals_softmax_topk_normalized():
    x_TD, _ = inputs()
    a = make("topk_softmax")(x_TD)
    b = make("softmax_topk", normalize=True)(x_TD)  # same seed: same weight
    assert torch.equal(a.ids_TK.sort(-1).values, b.ids_TK.sort(-1).values)
    order_a, order_b = a.ids_TK.argsort(-1), b.ids_TK.argsort(-1)
    torch.testing.assert_close(a.gates_TK.gather(-1, order_a), b.gates_TK.gather(-1, order_b))


def test_noisy_topk_noise_only_while_training():
    router = make("noisy_topk")
    x_TD, _ = inputs()
    router.eval()
    ref = make("topk_softmax")(x_TD)  # no noise: Mixtral gating on the same weight
    out = router(x_TD)
    torch.testing.assert_close(out.gates_TK, ref.gates_TK)
    router.train()
    train = router(x_TD)
    assert not torch.equal(train.ids_TK, out.ids_TK)  # softplus(0) ~ 0.69: noise moves picks
    (train.gates_TK * torch.randn_like(train.gates_TK)).sum().backward()
    assert router.noise.w_noise.grad.abs().sum() > 0  # the noise scale is learned


def test_sigmoid_bias_balances_a_skewed_router():
    router = make("sigmoid", bias_update_rate=0.01)  # V3's 0.001 would need ~10x the steps
    x_TD = torch.randn(512, D, generator=torch.Generator().manual_seed(4))
    x_TD[:, 0] = x_TD[:, 0].abs() + 1.0
    with torch.no_grad():  # every token strongly prefers expert 0
        router.weight.mul_(0.6)
        router.weight[0] = 0.0
        router.weight[0, 0] = 3.0

    def load_cv():
        load_E = torch.bincount(router(x_TD).ids_TK.flatten(), minlength=E).float()
        return load_E, (load_E.std(unbiased=False) / load_E.mean()).item()

    load_E, cv0 = load_cv()
    assert load_E[0] == 512  # skewed: expert 0 in every token's top-2
    for _ in range(200):
        router.after_step(load_cv()[0])
    assert load_cv()[1] < 0.2 * cv0
    assert router.balance.bias[0] < 0  # the overloaded expert was made less attractive
    gates = router(x_TD).gates_TK  # the bias steers selection only: gates still sum to scale
    torch.testing.assert_close(gates.sum(-1), torch.ones(512))


def test_sigmoid_gate_scale_and_no_update_when_disabled():
    router = make("sigmoid", scale=2.5, bias_update_rate=0.0)
    out = route(router)
    torch.testing.assert_close(out.gates_TK.sum(-1), torch.full((T,), 2.5))
    router.after_step(torch.arange(E).float())
    assert (router.balance.bias == 0).all()


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
@pytest.mark.parametrize("group_score", ["max", "top2sum"])
def test_group_limited_stays_inside_kept_groups(score, group_score):
    router = make("group_limited", k=3, n_groups=4, topk_groups=2, score=score,
                  group_score=group_score)
    out = route(router)
    s_TE = out.logits_TE.softmax(-1) if score == "softmax" else torch.sigmoid(out.logits_TE)
    g_TG = s_TE.view(T, 4, 2).amax(-1) if group_score == "max" else s_TE.view(T, 4, 2).sum(-1)
    kept_TM = g_TG.topk(2, dim=-1).indices.sort(-1).values
    for t in range(T):
        groups = (out.ids_TK[t] // 2).unique()
        assert set(groups.tolist()) <= set(kept_TM[t].tolist())
        in_kept = [e for e in range(E) if e // 2 in kept_TM[t].tolist()]
        best = sorted(in_kept, key=lambda e: -s_TE[t, e].item())[:3]
        assert set(out.ids_TK[t].tolist()) == set(best)


def test_group_limited_validates_its_config():
    with pytest.raises(ConfigError) as e:
        make("group_limited", n_groups=3)
    assert e.value.key == "model.moe.router.n_groups"
    with pytest.raises(ConfigError) as e:  # 1 group of 2 experts cannot hold 3
        make("group_limited", k=3, n_groups=4, topk_groups=1)
    assert e.value.key == "model.moe.router.topk_groups"
    with pytest.raises(ConfigError) as e:
        make("group_limited", score="relu")
    assert e.value.key == "model.moe.router.score"


@pytest.mark.parametrize("cf", [1.0, 2.0])
def test_expert_choice_each_expert_takes_c_tokens(cf):
    out = route(make("expert_choice", experts_per_token=cf))
    C = math.ceil(T * cf / E)
    assert out.ids_TK.shape == (T, E)
    load_E = torch.bincount(out.ids_TK[out.ids_TK >= 0], minlength=E)
    assert torch.equal(load_E, torch.full((E,), C))
    kept = out.ids_TK >= 0
    torch.testing.assert_close(out.gates_TK[kept], out.probs_TE[kept])


def test_base_balances_in_training_and_is_greedy_at_eval():
    router = make("base")
    x_TD = torch.randn(256, D, generator=torch.Generator().manual_seed(5)) + 2.0  # skewed logits
    router.eval()
    greedy = router(x_TD)
    torch.testing.assert_close(greedy.ids_TK[:, 0], greedy.logits_TE.argmax(-1))
    torch.testing.assert_close(greedy.gates_TK[:, 0], torch.sigmoid(greedy.logits_TE.amax(-1)))
    router.train()
    balanced = router(x_TD)
    load_g = torch.bincount(greedy.ids_TK.flatten(), minlength=E).float()
    load_b = torch.bincount(balanced.ids_TK.flatten(), minlength=E).float()
    assert load_b.max() < 0.5 * load_g.max()
    assert load_b.max() <= 2 * 256 / E
    with pytest.raises(ConfigError) as e:
        make("base", k=2)
    assert e.value.key == "model.moe.top_k"


def test_reinforce_samples_while_training_and_its_loss_reaches_the_weight():
    router = make("reinforce")
    x_TD, _ = inputs()
    router.eval()
    with pytest.raises(RuntimeError, match="training-mode forward"):
        router.reward_losses(torch.zeros(T))
    greedy = router(x_TD)
    torch.testing.assert_close(greedy.ids_TK, greedy.logits_TE.topk(2, dim=-1).indices)
    router.train()
    torch.manual_seed(0)
    out = router(x_TD)
    assert not torch.equal(out.ids_TK, greedy.ids_TK)  # sampled, not argmax
    loss, weight = router.reward_losses(torch.randn(T))["reinforce"]
    assert weight == router.cfg.policy_weight and router.learns_from == "policy"
    loss.backward()
    assert torch.isfinite(loss) and router.weight.grad.abs().sum() > 0
    assert torch.isfinite(router.select.baseline)
    with pytest.raises(ValueError, match="one per routed token"):
        router.reward_losses(torch.zeros(T + 1))


def test_reinforce_logp_is_the_plackett_luce_probability():
    router = make("reinforce", k=2)
    x_TD, _ = inputs()
    torch.manual_seed(0)
    out = router.train()(x_TD)
    p_TE = out.probs_TE
    i, j = out.ids_TK[:, 0:1], out.ids_TK[:, 1:2]
    pi, pj = p_TE.gather(-1, i), p_TE.gather(-1, j)
    expect_T = (pi.log() + (pj / (1 - pi)).log()).squeeze(-1)
    torch.testing.assert_close(router.select._logp_TK.sum(-1), expect_T)


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    router = make("top_p", p=0.5)
    out = route(router)
    sorted_TE = out.probs_TE.sort(-1, descending=True).values
    n_T = (out.ids_TK >= 0).sum(-1)
    for t in range(T):
        n = int(n_T[t])
        assert sorted_TE[t, :n].sum() >= 0.5 - 1e-6
        assert n == 1 or sorted_TE[t, : n - 1].sum() < 0.5
    torch.testing.assert_close(out.gates_TK.sum(-1), torch.ones(T))
    capped = route(make("top_p", p=1.0, max_k=3))
    assert capped.ids_TK.shape == (T, 3) and (capped.ids_TK >= 0).all()


def test_soft_router_is_a_dense_mixture():
    router = make("soft")
    out = route(router)
    assert router.dense_mixture and not router.causal
    assert torch.equal(out.ids_TK, torch.arange(E).expand(T, E))
    torch.testing.assert_close(out.gates_TK, out.logits_TE.softmax(-1))
