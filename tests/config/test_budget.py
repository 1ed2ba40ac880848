import pytest

from ablate.config.load import load_config
from ablate.errors import ConfigError
from ablate.training.accounting import param_counts

ARMS = [
    ["model.ffn=dense"],
    ["model.ffn=moe", "model.moe.n_experts=8", "model.moe.top_k=1"],
    ["model.ffn=moe", "model.moe.n_experts=8", "model.moe.top_k=2"],
    ["model.ffn=moe", "model.moe.n_experts=8", "model.moe.top_k=1", "model.moe.granularity=4"],
    ["model.ffn=moe", "model.moe.n_experts=16", "model.moe.top_k=1", "model.moe.n_shared=1"],
    ["model.ffn=moe", "model.moe.n_experts=16", "model.moe.top_k=2", "model.moe.n_shared=1",
     "model.moe.d_shared=128"],
]


def _active_ffn(cfg) -> int:
    if cfg.model.ffn == "dense":
        return cfg.model.d_ff
    d = cfg.model.moe
    return d.routed_top_k * d.expert_width + d.n_shared * d.shared_width


def test_budget_matches_active_params_across_arms():
    base = ["budget.ffn_active=512", "model.vocab_size=256", "model.d_model=64", "model.n_heads=2"]
    dense = param_counts(load_config(overrides=[*base, *ARMS[0]]).model, 64)["params_active"]
    for arm in ARMS:
        cfg = load_config(overrides=[*base, *arm])
        assert _active_ffn(cfg) == 512, arm
        counts = param_counts(cfg.model, 64)
        if cfg.model.ffn == "moe":  # equal up to the router's E*D per MoE layer
            router = counts["n_moe_layers"] * 64 * cfg.model.moe.routed_experts
            assert counts["params_active"] - router == dense
            assert counts["flops_per_token"] - 6 * router == param_counts(
                load_config(overrides=[*base, *ARMS[0]]).model, 64)["flops_per_token"]


def test_budget_that_does_not_divide_names_the_key():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["budget.ffn_active=512", "model.ffn=moe", "model.moe.top_k=1",
                               "model.moe.n_shared=2"])
    assert e.value.key == "budget.ffn_active"
