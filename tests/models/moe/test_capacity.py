"""Expert capacity: vectorised == reference loop, at most C per expert, priorities by hand.

Legend: T tokens, K slots per token, E experts.
"""

from __future__ import annotations

import pytest
import torch

from ablate.models.moe.capacity import apply_capacity, apply_capacity_reference, expert_capacity


def random_routing(T: int, E: int, K: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(T)])
    ids[torch.rand(T, K, generator=g) < 0.1] = -1  # some slots arrive already dropped
    gates = torch.rand(T, K, generator=g)
    gates[::5] = 0.5  # ties: broken by position
    return ids, gates


@pytest.mark.parametrize("priority", ["position", "score"])
@pytest.mark.parametrize("seed", range(6))
def test_vectorised_equals_reference(priority, seed):
    T, E, K = [(37, 4, 2), (64, 8, 3), (20, 16, 4)][seed % 3]
    ids, gates = random_routing(T, E, K, seed)
    for cf in (0.25, 0.8, 1.0, 1.3):
        fast = apply_capacity(ids, gates, None, E, cf, priority)
        ref = apply_capacity_reference(ids, gates, None, E, cf, priority)
        assert torch.equal(fast, ref), (cf, priority)


@pytest.mark.parametrize("priority", ["position", "score"])
def test_at_most_capacity_and_only_drops(priority):
    T, E, K = 64, 8, 2
    ids, gates = random_routing(T, E, K, 7)
    for cf in (0.5, 1.0, 1.25):
        out = apply_capacity(ids, gates, None, E, cf, priority)
        cap = expert_capacity(T, K, E, cf)
        assert torch.bincount(out[out >= 0], minlength=E).max() <= cap
        assert torch.all((out == ids) | (out == -1))  # ids only ever become -1


def test_large_capacity_drops_nothing_and_none_is_dropless():
    ids, gates = random_routing(50, 8, 2, 3)
    assert torch.equal(apply_capacity(ids, gates, None, 8, 8.0, "position"), ids)
    assert apply_capacity(ids, gates, None, 8, None, "score") is ids


def test_position_priority_gshard_order():
    """All first choices before any second choice; earlier tokens first within a slot."""
    ids = torch.tensor([[0, 1], [1, 0], [0, 1], [0, 1]])
    gates = torch.ones(4, 2)
    # C = ceil(4*2/2 * 0.5) = 2 per expert
    # expert 0: slot-0 tokens 0, 2, 3 -> tokens 0 and 2 keep, token 3 and token 1's slot 1 drop
    # expert 1: slot-0 token 1, then slot-1 tokens 0, 2, 3 -> token 1 and token 0 keep
    want = torch.tensor([[0, 1], [1, -1], [0, -1], [-1, -1]])
    assert torch.equal(apply_capacity(ids, gates, None, 2, 0.5, "position"), want)


def test_score_priority_highest_gates_win():
    ids = torch.tensor([[0], [0], [0], [1]])
    gates = torch.tensor([[0.1], [0.9], [0.5], [0.2]])
    # C = ceil(4/2 * 1.0) = 2: expert 0 keeps its two highest gates (tokens 1 and 2)
    want = torch.tensor([[-1], [0], [0], [1]])
    assert torch.equal(apply_capacity(ids, gates, None, 2, 1.0, "score"), want)
    scores = torch.tensor([[0.9], [0.1], [0.5], [0.2]])  # explicit scores override the gates
    want = torch.tensor([[0], [-1], [0], [1]])
    assert torch.equal(apply_capacity(ids, gates, scores, 2, 1.0, "score"), want)


def test_unknown_priority_raises():
    ids, gates = random_routing(8, 4, 2, 0)
    with pytest.raises(ValueError):
        apply_capacity(ids, gates, None, 4, 1.0, "random")
