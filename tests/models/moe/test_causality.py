"""Which routers are causal: changing tokens after position t must not change outputs at <= t.

Every registered router is built into a real `MoELayer` and checked against its declared
`causal` flag, both ways: a causal router leaks nothing (in eval and in training mode,
with the same random draws), and a router declared non-causal does leak for some t in
training mode, so the flag is honest.
"""

from __future__ import annotations

import pytest
import torch

from ablate.config.schema import MoEConfig
from ablate.models.moe.experts import RoutedExperts
from ablate.models.moe.layer import MoELayer
from ablate.models.moe.routers.selections.soft import soft_moe_forward, soft_moe_mix
from ablate.registry import ROUTERS

B, S, D, D_FF, E = 2, 8, 16, 32, 8


def layer_for(name: str) -> MoELayer:
    torch.manual_seed(0)
    cfg = MoEConfig(n_experts=E, top_k=1 if name == "base" else 2,
                    router={"name": name, "init_std": 0.5}, aux={})
    return MoELayer(cfg, D, D_FF)


def perturbed(x_BSD, ids_BS, t: int, seed: int):
    """Fresh inputs and token ids at positions > t, the same at <= t."""
    g = torch.Generator().manual_seed(seed)
    x2, ids2 = x_BSD.clone(), ids_BS.clone()
    x2[:, t + 1:] = torch.randn(x2[:, t + 1:].shape, generator=g)
    ids2[:, t + 1:] = torch.randint(0, 256, ids2[:, t + 1:].shape, generator=g)
    return x2, ids2


def max_leak(layer: MoELayer, training: bool) -> list[float]:
    """Per t: max |change| of outputs at positions <= t when positions > t change, relative
    to the largest output (expert outputs are small at init)."""
    layer.train(training)
    g = torch.Generator().manual_seed(1)
    x_BSD, ids_BS = torch.randn(B, S, D, generator=g), torch.randint(0, 256, (B, S), generator=g)
    leaks = []
    with torch.no_grad():
        torch.manual_seed(2)  # the same noise/samples per position in both calls
        y_BSD, _ = layer(x_BSD, ids_BS)
        scale = y_BSD.abs().max().item()
        for t in range(S - 1):
            x2, ids2 = perturbed(x_BSD, ids_BS, t, seed=10 + t)
            torch.manual_seed(2)
            y2, _ = layer(x2, ids2)
            leaks.append((y2[:, : t + 1] - y_BSD[:, : t + 1]).abs().max().item() / scale)
    return leaks


@pytest.mark.parametrize("name", ROUTERS.names())
def test_router_causality_flag_is_honest(name):
    layer = layer_for(name)
    if layer.router.causal:
        for training in (False, True):
            leaks = max_leak(layer, training)
            assert max(leaks) < 1e-5, f"{name} (training={training}) leaks future tokens: {leaks}"
    else:
        leaks = max_leak(layer, training=True)
        assert max(leaks) > 1e-2, f"{name} is declared non-causal but never leaked: {leaks}"


def test_base_router_is_causal_at_eval():
    # batch-level Sinkhorn only runs in training; eval is greedy top-1 per token
    assert max(max_leak(layer_for("base"), training=False)) < 1e-5


def test_soft_moe_mix_is_not_causal():
    g = torch.Generator().manual_seed(0)
    x_BSD, logits_BSE = torch.randn(B, S, D, generator=g), torch.randn(B, S, E, generator=g)
    slots_BED, combine_BSE = soft_moe_mix(x_BSD, logits_BSE)
    assert slots_BED.shape == (B, E, D) and combine_BSE.shape == (B, S, E)
    torch.testing.assert_close(combine_BSE.sum(-1), torch.ones(B, S))
    torch.manual_seed(0)
    experts = RoutedExperts(E, D, D_FF)
    y_BSD = soft_moe_forward(experts, x_BSD, logits_BSE)
    x2, logits2 = x_BSD.clone(), logits_BSE.clone()
    x2[:, -1] += 1.0  # change only the last position
    logits2[:, -1] += 1.0
    y2 = soft_moe_forward(experts, x2, logits2)
    assert (y2[:, 0] - y_BSD[:, 0]).abs().max() > 1e-4  # position 0 saw the change
    # sequences mix only within themselves when passed as (B, S, .)
    x3 = x_BSD.clone()
    x3[1] += 1.0
    torch.testing.assert_close(soft_moe_forward(experts, x3, logits_BSE)[0], y_BSD[0])


def test_expert_choice_evaluates_without_the_leak_when_asked():
    """eval_token_choice: training still leaks (expert choice over the batch), evaluation
    routes each token by its own scores and leaks nothing."""
    torch.manual_seed(0)
    cfg = MoEConfig(n_experts=E, top_k=2, aux={}, router={"name": "expert_choice", "init_std": 0.5,
                                                          "experts_per_token": 2.0,
                                                          "eval_token_choice": True})
    layer = MoELayer(cfg, D, D_FF)
    assert max(max_leak(layer, training=False)) < 1e-5
    assert max(max_leak(layer, training=True)) > 1e-2
    plain = layer_for("expert_choice")  # without it, evaluation leaks too
    assert max(max_leak(plain, training=False)) > 1e-2
