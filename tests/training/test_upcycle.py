"""Upcycling (Komatsuzaki et al. 2022), fine-grained split, freezing, the cached dense parent."""

import pytest
import torch
import torch.nn.functional as F

from ablate.config.load import load_config
from ablate.errors import ConfigError
from ablate.models.transformer import Transformer
from ablate.training.launch import COUNTERPART, prepare_init
from ablate.training.upcycle import ROUTER, upcycle
from ablate.training.weights import InitialWeights, freeze, load_initial, load_weights, save_weights
from tests.mlflow_helpers import all_runs

SIZES = ["model.vocab_size=256", "model.d_model=32", "model.n_heads=2", "model.d_ff=64",
         "model.n_layers=2"]
MOE = ["model.ffn=moe", "model.moe.n_experts=4", "model.moe.top_k=2"]


def _model(*overrides, seed=0):
    torch.manual_seed(seed)
    return Transformer(load_config(overrides=[*SIZES, *overrides]).model, max_seq_len=16).eval()


def upcycle_into(moe, dense_sd, mode="copy", noise=0.0, generator=None):
    """The pure surgery for `moe`'s config, loaded into `moe` as train() would load it."""
    state = upcycle(dense_sd, moe.cfg, mode, noise, generator)
    load_initial(moe, InitialWeights(state, "dense weights", {}, COUNTERPART, fresh=ROUTER))


def _init(cfg, model, **kw):
    """prepare_init, then the load train() does; -> the run's init tags."""
    initial = prepare_init(cfg, **kw)
    load_initial(model, initial)
    return initial.tags


def _loss(model, x_BS):
    with torch.no_grad():
        logits, _ = model(x_BS)
    return logits, F.cross_entropy(logits.flatten(0, 1), torch.roll(x_BS, -1, 1).flatten())


@pytest.mark.parametrize("extra", [[], ["model.moe.n_shared=1"], ["model.moe.n_shared=2"],
                                   ["model.moe.n_shared=1", "model.moe.shared_gate=true"],
                                   ["model.moe.dispatch=loop"]],
                         ids=["routed", "shared1", "shared2-tiled", "shared-gated", "loop"])
def test_copy_upcycled_moe_computes_the_dense_model(extra):
    dense = _model(seed=0)
    moe = _model(*MOE, *extra, seed=1)
    upcycle_into(moe, dense.state_dict(), "copy", noise=0.0)
    x = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0))
    (ld, lossd), (lm, lossm) = _loss(dense, x), _loss(moe, x)
    assert torch.allclose(ld, lm, atol=1e-5)
    assert abs(lossd.item() - lossm.item()) < 1e-5
    router = moe.moe_layers[0].router.weight
    assert not torch.equal(router, torch.zeros_like(router))  # fresh, not copied


def test_copy_noise_lets_experts_differ_and_stays_close():
    dense = _model(seed=0)
    moe = _model(*MOE, seed=1)
    gen = torch.Generator().manual_seed(0)
    upcycle_into(moe, dense.state_dict(), "copy", noise=0.01, generator=gen)
    x = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0))
    (_, lossd), (_, lossm) = _loss(dense, x), _loss(moe, x)
    assert abs(lossd.item() - lossm.item()) < 1e-3
    ex = moe.moe_layers[0].experts
    assert not torch.equal(ex.w1[0], ex.w1[1]) and not torch.equal(ex.w2[0], ex.w2[1])
    w1 = dense.state_dict()["blocks.0.ffn.w1.weight"].t()
    rel = (ex.w1[0] - w1).std() / w1.std()
    assert 0.005 < rel < 0.02  # relative std of the noise


def test_copy_needs_matching_width():
    dense = _model("model.d_ff=128")
    with pytest.raises(ConfigError) as e:
        upcycle_into(_model(*MOE), dense.state_dict(), "copy")
    assert e.value.key == "init.upcycle" and "split" in e.value.allowed


def test_split_experts_are_slices_of_the_dense_ffn():
    dense = _model(seed=0)  # d_ff 64
    moe = _model(*MOE, "model.moe.granularity=2", seed=1)  # 8 experts of width 32, k=4
    upcycle_into(moe, dense.state_dict(), "split")
    sd = dense.state_dict()
    for i, layer in enumerate(moe.moe_layers):
        w1, w3, w2 = (sd[f"blocks.{i}.ffn.{w}.weight"] for w in ("w1", "w3", "w2"))
        ex = layer.experts
        for e in range(8):
            s = slice((e % 2) * 32, (e % 2 + 1) * 32)
            assert torch.equal(ex.w1[e], w1[s].t()) and torch.equal(ex.w3[e], w3[s].t())
            assert torch.equal(ex.w2[e], 2 * w2[:, s].t())  # scaled by n = 2 slices
    # two experts of distinct slices, gates 1/2 each: exactly the dense FFN
    x_TD = torch.randn(5, 32)
    ids_TK = torch.tensor([[0, 1], [2, 3], [4, 7], [6, 1], [5, 0]])
    y = moe.moe_layers[0].experts(x_TD, ids_TK, torch.full((5, 2), 0.5))
    assert torch.allclose(y, dense.blocks[0].ffn(x_TD), atol=1e-5)


def test_freeze_moe_trains_only_the_rest():
    model = _model(*MOE, "model.moe.n_shared=1").train()
    moe_names = {n for n, _ in model.named_parameters() if ".ffn." in n}
    n = freeze(model, "moe")
    assert n == sum(p.numel() for layer in model.moe_layers for p in layer.parameters())
    assert all(p.requires_grad == (name not in moe_names) for name, p in model.named_parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randint(0, 256, (2, 16))
    logits, aux = model(x)
    (F.cross_entropy(logits.flatten(0, 1), x.flatten()) + sum(aux.values())).backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if ".ffn." in k)
    assert not torch.equal(before["embed.weight"], after["embed.weight"])
    assert freeze(_model(*MOE), "non_moe") == sum(
        p.numel() for n, p in _model(*MOE).named_parameters() if ".ffn." not in n)
    with pytest.raises(ConfigError, match="nothing would be trained"):
        freeze(_model(), "non_moe")


def _cfg(tiny, *extra):
    return load_config(overrides=[*tiny, *MOE, "model.vocab_size=256", *extra])


def _parents(home):
    return [r for r in all_runs(home) if r.data.tags.get("ablate.role") == "dense_parent"]


def test_dense_parent_trained_once_then_reused(ablate_home, tiny):
    from ablate.training.run import train

    cfg = _cfg(tiny, "init.dense_steps=3", "init.noise=0.01")
    model = Transformer(cfg.model, cfg.data.block_size)
    torch.manual_seed(123)
    tags = _init(cfg, model, experiment="up", tracking_uri=None, parent_run_id=None)
    rng_after_training = torch.rand(3)
    parents = _parents(ablate_home)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert (parents[0].data.tags["ablate.arm"] == parents[0].data.params["arm"]
            == "dense-parent-ff64")
    params = parents[0].data.params
    assert params["model.ffn"] == "dense" and params["trainer.max_steps"] == "3"
    assert tags["ablate.init"] == "upcycle_copy"
    assert tags["ablate.upcycled_from"] == parents[0].info.run_id

    again = Transformer(cfg.model, cfg.data.block_size)
    torch.manual_seed(123)
    tags2 = _init(cfg, again, experiment="up", tracking_uri=None, parent_run_id=None)
    assert torch.equal(torch.rand(3), rng_after_training)  # global RNG as if nothing trained
    assert len(_parents(ablate_home)) == 1 and tags2 == tags
    parent_sd = load_weights(tags["ablate.init_weights"])
    assert torch.equal(again.state_dict()["embed.weight"], parent_sd["embed.weight"])

    # through train(): split arm of granularity 2 shares the parent, frozen MoE trains
    split = _cfg(tiny, "init.dense_steps=3", "init.upcycle=split", "model.moe.granularity=2",
                 "init.freeze=moe")
    result = train(split, experiment="up", initial=prepare_init(split, experiment="up"))
    assert len(_parents(ablate_home)) == 1
    run = [r for r in all_runs(ablate_home) if r.info.run_id == result.run_id][0]
    assert run.data.tags["ablate.upcycled_from"] == parents[0].info.run_id
    assert run.data.tags["ablate.init"] == "upcycle_split"
    assert run.data.tags["ablate.frozen"] == "moe"
    assert int(run.data.tags["ablate.frozen_params"]) > 0


def test_checkpoint_exact_and_bad(tmp_path, tiny):
    src = _model(*MOE, seed=3)
    save_weights(src, tmp_path / "w" / "weights.pt")
    cfg = _cfg(tiny, f"init.from_checkpoint={tmp_path / 'w' / 'weights.pt'}")
    dst = Transformer(cfg.model, 16)
    tags = _init(cfg, dst, experiment="x")
    assert tags["ablate.init"] == "checkpoint"
    src_sd, dst_sd = src.state_dict(), dst.state_dict()
    assert all(torch.equal(src_sd[k], dst_sd[k]) for k in src_sd)

    save_weights(_model(seed=4), tmp_path / "dense.pt")  # the dense counterpart: upcycled
    cfg.init.from_checkpoint = str(tmp_path / "dense.pt")
    tags = _init(cfg, Transformer(cfg.model, 16), experiment="x")
    assert tags["ablate.init"] == "upcycle_copy"
    assert tags["ablate.upcycled_from"] == str(tmp_path / "dense.pt")
    cfg.init.dense_steps = 3
    with pytest.raises(ConfigError, match="two sources"):
        _init(cfg, dst, experiment="x")
    cfg.init.dense_steps = 0

    (tmp_path / "junk.pt").write_text("not a tensor file")
    for bad in (tmp_path / "missing.pt", tmp_path / "junk.pt"):
        cfg.init.from_checkpoint = str(bad)
        with pytest.raises(ConfigError) as e:
            _init(cfg, dst, experiment="x")
        assert e.value.key == "init.from_checkpoint"
    save_weights(_model("model.d_model=64"), tmp_path / "other.pt")  # a different dense model
    cfg.init.from_checkpoint = str(tmp_path / "other.pt")
    with pytest.raises(ConfigError) as e:
        _init(cfg, dst, experiment="x")
    assert e.value.key == "init.from_checkpoint"


def test_upcycle_is_a_pure_function_of_the_dense_weights():
    """Same dense weights, config and generator seed: the same MoE weights; the input is not
    touched; the result is every key of the MoE model but its routers' (they start fresh)."""
    dense_sd = _model(seed=0).state_dict()
    before = {k: v.clone() for k, v in dense_sd.items()}
    moe = _model(*MOE, "model.moe.n_shared=1", "model.moe.shared_gate=true", seed=1)
    a, b = (upcycle(dense_sd, moe.cfg, "copy", 0.01, torch.Generator().manual_seed(5))
            for _ in range(2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(before[k], dense_sd[k]) for k in before)
    model_keys = set(moe.state_dict())
    assert set(a) == {k for k in model_keys if ROUTER not in k}
    assert any(ROUTER in k for k in model_keys)
    assert torch.equal(a["blocks.0.ffn.shared_gate.weight"], torch.zeros(1, 32))
    c = upcycle(dense_sd, moe.cfg, "copy", 0.01, torch.Generator().manual_seed(6))
    assert not torch.equal(a["blocks.0.ffn.experts.w13"], c["blocks.0.ffn.experts.w13"])


def test_a_checkpoint_with_a_key_the_model_lacks_is_refused(tmp_path):
    src = _model(*MOE, seed=3)
    state = {**src.state_dict(), "blocks.9.ffn.w1.weight": torch.zeros(2, 2)}
    dst = _model(*MOE, seed=4)
    with pytest.raises(ConfigError) as e:
        load_initial(dst, InitialWeights(state, "w.pt", {}, "this model's weights"))
    assert e.value.key == "init.from_checkpoint" and "blocks.9.ffn.w1.weight" in e.value.why
