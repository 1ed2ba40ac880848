import pytest

from ablate.config.load import flatten, load_config, to_dict
from ablate.errors import ConfigError


def test_defaults_load_and_router_gets_its_dataclass():
    cfg = load_config()
    assert cfg.model.ffn == "dense"
    assert type(cfg.model.moe.router).__name__ == "SoftmaxTopKConfig"
    assert cfg.model.moe.router.normalize is True


def test_yaml_then_dotlist_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: {d_model: 64, n_heads: 2}\noptim: {lr: 1.0e-3}\n")
    cfg = load_config(f, ["optim.lr=3e-4", "model.moe.router.normalize=false"])
    assert cfg.model.d_model == 64 and cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.model.moe.router.normalize is False


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model.moe.top_k=9", "model.moe.n_experts=8"], "model.moe.top_k"),
        (["model.d_model=100", "model.n_heads=3"], "model.n_heads"),
        (["model.moe.top_kk=2"], "model.moe.top_kk"),
        (["model.d_model=1.5"], "model.d_model"),
        (["trainer.deterministic=maybe"], "trainer.deterministic"),
        (["model.moe.router.name=nope"], "model.moe.router.name"),
        (["model.moe.router.normalise=true"], "model.moe.router.normalise"),
        (["model.moe.aux.nope=0.1"], "model.moe.aux.nope"),
        (["model.moe.aux.switch=-1"], "model.moe.aux.switch"),
        (["model.moe.granularity=3"], "model.moe.granularity"),
        (["model.moe.n_shared=-1"], "model.moe.n_shared"),
        (["model.moe.capacity_factor=0"], "model.moe.capacity_factor"),
        (["model.ffn=sparse"], "model.ffn"),
        (["data.source=text"], "data.files"),
        (["trainer.precision=fp8"], "trainer.precision"),
        (["model.moe.top_k"], "model.moe.top_k"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=overrides)
    assert e.value.key == key
    assert "\n" not in str(e.value)
    assert "allowed" in str(e.value)


def test_malformed_yaml_is_one_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model: {d_model: [\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert e.value.key == "config" and "line" in str(e.value)


def test_flatten_gives_dotted_keys():
    flat = flatten(to_dict(load_config(overrides=["model.moe.top_k=1"])))
    assert flat["model.moe.top_k"] == 1
    assert flat["model.moe.router.name"] == "softmax_topk"
    assert flat["model.moe.aux.switch"] == pytest.approx(0.01)


def test_leaky_router_is_refused_for_a_causal_lm_unless_allowed():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["model.ffn=moe", "model.moe.router.name=expert_choice"])
    assert e.value.key == "model.moe.router.name" and "allow_noncausal_routing" in str(e.value)
    cfg = load_config(overrides=["model.ffn=moe", "model.moe.router.name=expert_choice",
                                 "model.moe.allow_noncausal_routing=true"])
    assert cfg.model.moe.router.name == "expert_choice"


def test_loss_that_needs_router_probs_is_refused_for_hash():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["model.ffn=moe", "model.moe.router.name=hash"])
    assert e.value.key == "model.moe.aux.switch"
    load_config(overrides=["model.ffn=moe", "model.moe.router.name=hash", "model.moe.aux.switch=0",
                           "model.moe.aux.z=0"])


@pytest.mark.parametrize("preset, router", [("deepseek_v3", "sigmoid"), ("olmoe", "softmax_topk")])
def test_restating_a_presets_own_router_keeps_its_router_block(preset, router):
    """Naming the router the preset already names changes nothing (DeepSeek-V3's groups and
    scale stay; OLMoE's gates stay unnormalised); naming another router drops the block."""
    from ablate.config.load import load_config

    moe = ["model.ffn=moe", f"model.moe.preset={preset}"]
    alone = load_config(overrides=moe).model.moe.router
    assert load_config(overrides=[*moe, f"model.moe.router.name={router}"]).model.moe.router \
        == alone
    other = load_config(overrides=[*moe, "model.moe.router.name=topk_softmax"]).model.moe.router
    assert other.name == "topk_softmax" and other.scale == 1.0
