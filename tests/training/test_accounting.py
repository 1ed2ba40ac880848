import pytest
import torch

from ablate.config.load import load_config
from ablate.models.moe.layer import MoELayer
from ablate.training.accounting import param_counts
from ablate.training.module import LMModule

CASES = [
    ["model.ffn=dense"],
    ["model.ffn=dense", "model.tie_embeddings=false"],
    ["model.ffn=moe", "model.moe.n_experts=4", "model.moe.top_k=1"],
    ["model.ffn=moe", "model.moe.n_experts=8", "model.moe.top_k=2", "model.moe.granularity=2"],
    ["model.ffn=moe", "model.moe.n_shared=1", "model.moe.shared_gate=true",
     "model.moe.moe_every=2"],
    ["model.ffn=moe", "model.moe.first_dense=1", "model.moe.d_expert=32"],
    ["model.attention=mla", "model.mla.kv_rank=16", "model.mla.rope_dim=8"],
    ["model.attention=mla", "model.mla.q_rank=24", "model.mla.head_dim=8",
     "model.mla.v_head_dim=12"],
    ["model.mtp.depth=2", "model.tie_embeddings=false"],
    ["model.ffn=moe", "model.attention=mla", "model.mtp.depth=1", "model.moe.n_experts=4"],
]


def _counted(module) -> tuple[int, int]:
    """Count from the built model: a layer's routed experts count k/E towards active, the
    MTP modules (training only) not at all."""
    total = sum(p.numel() for p in module.parameters())
    active = total
    if module.model.mtp is not None:
        active -= sum(p.numel() for p in module.model.mtp.parameters())
    for m in module.modules():
        if isinstance(m, MoELayer):
            routed = sum(p.numel() for p in m.experts.parameters())
            active -= routed - routed * m.cfg.routed_top_k // m.cfg.routed_experts
    return total, active


@pytest.mark.parametrize("overrides", CASES)
def test_predicted_params_equal_built(overrides):
    cfg = load_config(overrides=[*overrides, "model.vocab_size=256", "model.d_model=32",
                                 "model.n_heads=2", "model.d_ff=64", "model.n_layers=3"])
    module = LMModule(cfg.model, cfg.optim, 10, 16)
    predicted = param_counts(cfg.model, 16)
    total, active = _counted(module)
    assert predicted["params_total"] == total
    assert predicted["params_active"] == active


def test_matched_arms_have_equal_active_params():
    base = ["model.vocab_size=256", "model.d_ff=512"]
    dense = param_counts(load_config(overrides=[*base, "model.ffn=dense"]).model, 128)
    arms = [["model.moe.n_experts=8", "model.moe.top_k=1"],
            ["model.moe.n_experts=8", "model.moe.top_k=1", "model.moe.granularity=2"]]
    for arm in arms:
        moe = param_counts(load_config(overrides=[*base, "model.ffn=moe", *arm]).model, 128)
        router = (moe["n_moe_layers"] * 128 * 8
                  * load_config(overrides=[*base, *arm]).model.moe.granularity)
        assert moe["params_active"] - router == dense["params_active"]
        assert moe["params_total"] > dense["params_total"]


def test_flops_scale_with_active_not_total():
    base = ["model.vocab_size=256", "model.ffn=moe", "model.moe.top_k=1"]
    f8 = param_counts(load_config(overrides=[*base, "model.moe.n_experts=8"]).model, 128)
    f64 = param_counts(load_config(overrides=[*base, "model.moe.n_experts=64"]).model, 128)
    router_flops = 6 * 4 * 128 * (64 - 8)
    assert f64["flops_per_token"] - f8["flops_per_token"] == router_flops
    assert torch.tensor(f64["params_total"]) > 5 * f8["params_total"] / 2


def test_mha_flops_and_cache_are_unchanged_by_the_mla_accounting():
    """The attention term written per head width still gives MHA's 6 * L * S * D, and the
    cache 2 * d_model per layer; MLA's scores use its own q/k and v widths."""
    cfg = load_config(overrides=["model.vocab_size=256"]).model  # D 128, 4 layers, 4 heads
    c = param_counts(cfg, 128)
    D, V, L = 128, 256, 4
    per_layer = 4 * D * D + 2 * D + 3 * D * cfg.d_ff
    assert c["flops_per_token"] == 6 * (L * per_layer + D + V * D) + 6 * L * 128 * D
    assert c["kv_cache_bytes_per_token"] == L * 2 * D * 2
    mla = load_config(overrides=["model.vocab_size=256", "model.attention=mla"]).model
    m = param_counts(mla, 128)
    H, N, R, Vh = 4, 32, 16, 32  # defaults: head_dim = D / H, v_head_dim = head_dim
    attn = D * H * (N + R) + D * (64 + R) + 64 + 64 * H * (N + Vh) + H * Vh * D
    assert m["params_total"] - c["params_total"] == L * (attn - 4 * D * D)
    scores = 3 * 128 * H * (N + R + Vh)
    assert (m["flops_per_token"] - c["flops_per_token"]
            == 6 * L * (attn - 4 * D * D) + L * (scores - 6 * 128 * D))


def test_every_size_is_named_where_the_trackers_read_it():
    """Sizes are logged as MLflow params; tracking.metrics.SIZES is how a report or a saved
    runs view knows a size is a param, not a metric."""
    from ablate.config.load import load_config
    from ablate.tracking.metrics import SIZES
    from ablate.training.accounting import param_counts

    for ffn in ("dense", "moe"):
        cfg = load_config(overrides=[f"model.ffn={ffn}", "model.vocab_size=256"])
        assert sorted(param_counts(cfg.model, 128)) == sorted(SIZES)
