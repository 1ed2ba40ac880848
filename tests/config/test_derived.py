"""The derived MoE sizes: resolved once by load_config, refused when set by hand, resolved
where the layer is built for a MoEConfig made in Python."""

import pytest

from ablate.config.derived import DERIVED
from ablate.config.load import flatten, load_config, to_dict
from ablate.config.schema import MoEConfig
from ablate.errors import ConfigError
from ablate.models.moe.layer import MoELayer

MOE = ["model.ffn=moe", "model.d_ff=256", "model.moe.n_experts=8", "model.moe.top_k=2"]


@pytest.mark.parametrize("extra, sizes", [
    ([], (8, 2, 256, 256)),
    (["model.moe.granularity=4"], (32, 8, 64, 64)),
    (["model.moe.d_expert=128", "model.moe.granularity=2"], (16, 4, 64, 64)),
    (["model.moe.n_shared=1", "model.moe.d_shared=96"], (8, 2, 256, 96)),
    (["budget.ffn_active=500", "model.moe.granularity=2", "model.moe.n_shared=1"],
     (16, 4, 100, 100)),
])
def test_load_config_resolves_the_derived_sizes(extra, sizes):
    """(The last case after the budget step: 500 units over 4 routed + 1 shared slots.)"""
    moe = load_config(overrides=[*MOE, *extra]).model.moe
    assert tuple(getattr(moe, name) for name in DERIVED) == sizes


def test_derived_sizes_are_params_and_refused_when_set_otherwise():
    cfg = load_config(overrides=MOE)
    flat = flatten(to_dict(cfg))
    assert flat["model.moe.routed_experts"] == 8 and flat["model.moe.expert_width"] == 256
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[*MOE, "model.moe.routed_experts=16"])
    assert e.value.key == "model.moe.routed_experts" and "derived" in e.value.why
    assert "\n" not in str(e.value)
    # the value it resolves to anyway is accepted: a run's own config.yaml loads back
    again = load_config(overrides=[*MOE, "model.moe.routed_experts=8",
                                   "model.moe.shared_width=256"])
    assert again.model.moe == cfg.model.moe


def test_a_layer_resolves_a_moe_config_built_in_python_once():
    cfg = MoEConfig(n_experts=4, top_k=1, granularity=2, n_shared=1, aux={})
    layer = MoELayer(cfg, d_model=8, d_ff=32)
    assert (layer.cfg.routed_experts, layer.cfg.routed_top_k, layer.cfg.expert_width,
            layer.cfg.shared_width) == (8, 2, 16, 16)
    assert cfg.routed_experts is None  # the caller's config is left as it was
    assert tuple(layer.experts.w2.shape) == (8, 16, 8) and layer.shared.w1.weight.shape[0] == 16
    loaded = load_config(overrides=[*MOE, "model.d_model=16", "model.n_heads=2"]).model
    assert MoELayer(loaded.moe, loaded.d_model, loaded.d_ff).cfg is loaded.moe  # used as is
