"""Fast dispatch equals the reference loop: outputs and gradients (x, w1, w3, w2, gates).

Both fast kernels run on CPU here: `blocked` (the CPU default) and `grouped` (the CUDA
default: autograd through grouped_mm, dropped rows as an uninitialised tail).
Legend: T tokens, D width, H expert width, E experts, K slots per token.
"""

from __future__ import annotations

import pytest
import torch

import ablate.models.moe.experts as experts_mod
from ablate.config.schema import MoEConfig
from ablate.models.moe.capacity import apply_capacity
from ablate.models.moe.experts import RoutedExperts, _gmm_ok
from ablate.models.moe.layer import MoELayer

KERNELS = ["blocked", "grouped"]


def routing(T: int, E: int, K: int, seed: int = 0, skip: tuple[int, ...] = ()):
    """Distinct random experts per token (never those in `skip`), random positive gates."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([e for e in range(E) if e not in skip])
    ids = torch.stack([allowed[torch.randperm(len(allowed), generator=g)[:K]] for _ in range(T)])
    gates = torch.rand(T, K, generator=g) + 0.1
    return ids, gates


def run(experts: RoutedExperts, fn, x, ids, gates, seed: int = 3):
    """y and the gradients of <y, dy> w.r.t. x, gates, w1, w3, w2."""
    x = x.detach().clone().requires_grad_()
    gates = gates.detach().clone().requires_grad_()
    experts.zero_grad(set_to_none=True)
    y = fn(x, ids, gates)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    y.backward(dy.to(y.dtype))
    H = experts.d_hidden
    gw13 = experts.w13.grad
    return {"y": y.detach(), "x": x.grad, "gates": gates.grad, "w1": gw13[..., :H],
            "w3": gw13[..., H:], "w2": experts.w2.grad}


def assert_matches(experts, kernel, x, ids, gates, atol=1e-5):
    fast = run(experts, lambda *a: experts.forward_grouped(*a, kernel=kernel), x, ids, gates)
    ref = run(experts, experts.forward_loop, x, ids, gates)
    for name in ref:
        torch.testing.assert_close(fast[name], ref[name], atol=atol, rtol=1e-4, msg=name)
    return fast


def make(E=6, D=16, H=8, seed=0):
    torch.manual_seed(seed)
    experts = RoutedExperts(E, D, H)
    experts.reset_parameters(std=0.3)  # O(1) activations so that errors would show
    return experts


@pytest.mark.parametrize("kernel", KERNELS)
def test_dropless_matches_loop(kernel):
    experts, (ids, gates) = make(), routing(40, 6, 2)
    x = torch.randn(40, 16)
    assert _gmm_ok(x, experts.w13, experts.w2)  # this case runs the grouped_mm path
    assert_matches(experts, kernel, x, ids, gates)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("priority", ["position", "score"])
def test_capacity_drops_match_loop(kernel, priority):
    experts, (ids, gates) = make(), routing(40, 6, 3, seed=1)
    ids = apply_capacity(ids, gates, None, 6, 0.6, priority)
    assert (ids < 0).any() and (ids >= 0).any()
    out = assert_matches(experts, kernel, torch.randn(40, 16), ids, gates)
    assert torch.all(out["gates"][ids < 0] == 0)  # a dropped slot's gate gets no gradient


@pytest.mark.parametrize("kernel", KERNELS)
def test_empty_experts_match_loop(kernel):
    experts, (ids, gates) = make(), routing(30, 6, 2, seed=2, skip=(0, 3, 5))
    out = assert_matches(experts, kernel, torch.randn(30, 16), ids, gates)
    for e in (0, 3, 5):  # no tokens: exactly zero gradient, not garbage
        assert torch.all(out["w1"][e] == 0) and torch.all(out["w2"][e] == 0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_odd_sizes_use_fallback_and_match(kernel):
    experts, (ids, gates) = make(E=5, D=7, H=5), routing(33, 5, 2, seed=3)
    x = torch.randn(33, 7)
    assert not _gmm_ok(x, experts.w13, experts.w2)  # 28- and 20-byte strides: the loop path
    ids[::4, 1] = -1
    assert_matches(experts, kernel, x, ids, gates)


@pytest.mark.parametrize("skip", [(2,), (0, 6, 7)])
def test_blocked_many_blocks(monkeypatch, skip):
    """Blocks smaller than one expert's rows; empty experts first, inside and last."""
    monkeypatch.setattr(experts_mod, "_BLOCK_BYTES", 8 * 16 * 4)  # 8 rows of 16 floats
    experts, (ids, gates) = make(E=8), routing(50, 8, 3, seed=4, skip=skip)
    ids[::7, 0] = -1
    out = assert_matches(experts, "blocked", torch.randn(50, 16), ids, gates)
    assert all(torch.all(out["w1"][e] == 0) and torch.all(out["w2"][e] == 0) for e in skip)


@pytest.mark.parametrize("kernel", KERNELS)
def test_all_dropped_is_zero(kernel):
    experts, (_, gates) = make(), routing(12, 6, 2)
    ids = torch.full((12, 2), -1)  # the loop reference builds no graph here: check directly
    out = run(experts, lambda *a: experts.forward_grouped(*a, kernel=kernel), torch.randn(12, 16),
              ids, gates)
    for name, value in out.items():
        assert torch.all(value == 0), name


def test_bf16_autocast_casts_once_and_matches_loop():
    experts, (ids, gates) = make(), routing(32, 6, 2)
    x = torch.randn(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = run(experts, experts.forward_grouped, x, ids, gates)
        ref = run(experts, experts.forward_loop, x, ids, gates)
    assert fast["y"].dtype == torch.bfloat16 and fast["w1"].dtype == torch.float32
    for name in ref:
        torch.testing.assert_close(fast[name].float(), ref[name].float(), atol=0.1, rtol=0.05)


def test_layout_views_and_parameter_count():
    E, D, H = 4, 16, 8
    experts = RoutedExperts(E, D, H)
    assert sum(p.numel() for p in experts.parameters()) == 3 * E * D * H
    assert experts.w1.shape == experts.w3.shape == (E, D, H) and experts.w2.shape == (E, H, D)
    with torch.no_grad():  # writes through the views land in w13 (e.g. upcycling)
        experts.w1.fill_(1.0)
        experts.w3.fill_(2.0)
    assert torch.all(experts.w13[..., :H] == 1) and torch.all(experts.w13[..., H:] == 2)


@pytest.mark.parametrize("cf", [None, 1.0])
def test_moe_layer_grouped_equals_loop_with_shared_expert(cf):
    torch.manual_seed(0)
    cfg = MoEConfig(n_experts=8, top_k=2, d_expert=16, n_shared=1, aux={}, capacity_factor=cf,
                    router={"name": "softmax_topk", "init_std": 0.5})
    fast = MoELayer(cfg, 16, 16)
    ref = MoELayer(MoEConfig(**{**cfg.__dict__, "dispatch": "loop"}), 16, 16)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 24, 16)
    dy = torch.randn(2, 24, 16)
    if cf is not None:  # the capacity hook really drops something here
        route = fast.router(x.reshape(-1, 16))
        assert (apply_capacity(route.ids_TK, route.gates_TK, None, 8, cf) < 0).any()
    grads = []
    for layer in (fast, ref):
        xi = x.clone().requires_grad_()
        y, _ = layer(xi)
        y.backward(dy)
        grads.append({"y": y.detach(), "x": xi.grad,
                      **{n: p.grad for n, p in layer.named_parameters()}})
    assert set(grads[0]) == set(grads[1])
    for name in grads[1]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)
