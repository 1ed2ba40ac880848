"""Aux losses against values computed by hand on tiny tensors (numbers worked out in comments)."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.config.schema import MoEConfig
from ablate.losses.aux import (
    AuxContext,
    comm_loss,
    device_loss,
    expert_fraction,
    importance_loss,
    seq_aux_loss,
    switch_loss,
    z_loss,
)
from ablate.models.moe.layer import MoELayer
from ablate.models.moe.routers.base import RouterOutput
from ablate.registry import AUX_LOSSES

# T=4 tokens, E=2 experts, K=1; two sequences of S=2 (tokens 0,1 | 2,3)
PROBS = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
IDS = torch.tensor([[0], [0], [0], [1]])
# T=2, E=4 experts on D=2 devices ({0,1} | {2,3}), K=2
PROBS4 = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.5, 0.2, 0.1, 0.2]])
IDS4 = torch.tensor([[0, 1], [3, 0]])


def close(value: torch.Tensor, expect: float) -> None:
    assert value.item() == pytest.approx(expect, abs=1e-6)


def test_switch():
    # f = [3/4, 1/4], P = [0.65, 0.35]: 2 * (0.4875 + 0.0875) = 1.15
    close(switch_loss(probs_TE=PROBS, ids_TK=IDS, n_experts=2), 1.15)


def test_expert_fraction_skips_empty_slots():
    # slots -1 are not assignments: counts [2, 1] over 3 kept
    f = expert_fraction(torch.tensor([[0, -1], [0, 1]]), 2)
    torch.testing.assert_close(f, torch.tensor([2 / 3, 1 / 3]))


def test_importance():
    # I = [2.6, 1.4], mean 2, population variance 0.36: CV^2 = 0.36 / 4 = 0.09
    close(importance_loss(probs_TE=PROBS), 0.09)
    close(importance_loss(probs_TE=torch.full((4, 2), 0.5)), 0.0)


def test_z():
    # logsumexp rows: ln 2 and 1 + ln 2
    logits = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    close(z_loss(logits_TE=logits), (math.log(2) ** 2 + (1 + math.log(2)) ** 2) / 2)


def test_seq_aux():
    # seq 0: f = [1, 0], P = [0.85, 0.15] -> 2 * 0.85 = 1.7
    # seq 1: f = [1/2, 1/2], P = [0.45, 0.55] -> 2 * 0.5 = 1.0; mean 1.35
    close(seq_aux_loss(probs_TE=PROBS, ids_TK=IDS, n_experts=2, batch_shape=(2, 2)), 1.35)
    # one sequence of 4 is the plain switch loss
    close(seq_aux_loss(probs_TE=PROBS, ids_TK=IDS, n_experts=2, batch_shape=(1, 4)), 1.15)


def test_device():
    # expert fractions [2, 1, 0, 1] / 4 -> per device F = [3/4, 1/4]
    # P = [0.45, 0.25, 0.15, 0.15] -> per device [0.7, 0.3]; 2 * (0.525 + 0.075) = 1.2
    close(device_loss(probs_TE=PROBS4, ids_TK=IDS4, n_experts=4, n_devices=2), 1.2)
    # one expert per device is the switch loss
    close(device_loss(probs_TE=PROBS, ids_TK=IDS, n_experts=2, n_devices=2), 1.15)
    with pytest.raises(ValueError, match="divide"):
        device_loss(probs_TE=PROBS4, ids_TK=IDS4, n_experts=4, n_devices=3)


def test_comm():
    # token 0 reaches device 0 (experts 0, 1: counted once); token 1 reaches devices 1 and 0
    # received = [2, 1]; f'' = D / (M T) * received; P'' = [0.7, 0.3]
    # M=2: f'' = [1, 0.5] -> 0.7 + 0.15 = 0.85;  M=1: f'' = [2, 1] -> 1.4 + 0.3 = 1.7
    close(comm_loss(probs_TE=PROBS4, ids_TK=IDS4, n_experts=4, n_devices=2, max_devices=2), 0.85)
    close(comm_loss(probs_TE=PROBS4, ids_TK=IDS4, n_experts=4, n_devices=2, max_devices=1), 1.7)
    # an empty slot sends nothing: token 0 -> device 0 only, token 1 -> device 1 only
    ids = torch.tensor([[0, -1], [3, -1]])  # received [1, 1]: f'' = [0.5, 0.5] at M=2
    close(comm_loss(probs_TE=PROBS4, ids_TK=ids, n_experts=4, n_devices=2, max_devices=2), 0.5)


def test_adapters_match_the_functions():
    route = RouterOutput(IDS4, torch.ones(2, 2), logits_TE=PROBS4.log(), probs_TE=PROBS4)
    ctx = AuxContext(route, 4, (1, 2), n_devices=2, max_devices=2)
    expect = {"switch": switch_loss(probs_TE=PROBS4, ids_TK=IDS4, n_experts=4),
              "z": z_loss(logits_TE=PROBS4.log()), "importance": importance_loss(probs_TE=PROBS4),
              "seq_aux": seq_aux_loss(probs_TE=PROBS4, ids_TK=IDS4, n_experts=4,
                                      batch_shape=(1, 2)),
              "device": torch.tensor(1.2), "comm": torch.tensor(0.85)}
    assert set(expect) <= set(AUX_LOSSES.names())
    for name, value in expect.items():
        close(AUX_LOSSES.get(name).obj(ctx), value.item())


def test_devices_default_to_the_routers_groups():
    # a group-limited router (G=2 groups, M=1) and no n_devices: D=2, M=1 from the router
    grouped = MoELayer(MoEConfig(n_experts=4, top_k=2, aux={}, router={
        "name": "group_limited", "n_groups": 2, "topk_groups": 1}), d_model=4, d_ff=8)
    route = RouterOutput(IDS4, torch.ones(2, 2), probs_TE=PROBS4)
    assert grouped.devices(route) == (2, 1)
    ctx = AuxContext(route, 4, (1, 2), *grouped.devices(route))
    close(AUX_LOSSES.get("device").obj(ctx), 1.2)
    close(AUX_LOSSES.get("comm").obj(ctx), 1.7)
    # no groups anywhere: one device, where every loss is the constant 1
    plain = MoELayer(MoEConfig(n_experts=4, top_k=2, aux={}), d_model=4, d_ff=8)
    assert plain.devices(route) == (1, 1)
    ctx = AuxContext(route, 4, (1, 2), *plain.devices(route))
    close(AUX_LOSSES.get("device").obj(ctx), 1.0)
    close(AUX_LOSSES.get("comm").obj(ctx), 1.0)
    # an explicit n_devices wins over the router's groups
    override = MoELayer(MoEConfig(n_experts=4, top_k=2, aux={}, n_devices=4, router={
        "name": "group_limited", "n_groups": 2, "topk_groups": 1}), d_model=4, d_ff=8)
    assert override.devices(route) == (4, 2)


@pytest.mark.parametrize("name", ["switch", "importance", "seq_aux", "device", "comm", "z"])
def test_losses_refuse_routers_without_probs(name):
    ctx = AuxContext(RouterOutput(IDS, torch.ones(4, 1)), 2, (2, 2), n_devices=2)
    with pytest.raises(ValueError, match=f"aux loss '{name}' needs router"):
        AUX_LOSSES.get(name).obj(ctx)
