import torch

from ablate.config.load import load_config
from ablate.models.mlp import SwiGLU
from ablate.models.moe.layer import MoELayer
from ablate.models.transformer import Transformer


def _cfg(*overrides):
    return load_config(overrides=["model.vocab_size=256", "model.d_model=32", "model.n_heads=2",
                                  "model.d_ff=64", "model.n_layers=2", *overrides]).model


def test_shapes_and_tied_head():
    m = Transformer(_cfg(), max_seq_len=16)
    logits, aux = m(torch.randint(0, 256, (2, 16)))
    assert logits.shape == (2, 16, 256) and aux == {}
    assert m.head.weight is m.embed.weight
    untied = Transformer(_cfg("model.tie_embeddings=false"), max_seq_len=16)
    assert untied.head.weight is not untied.embed.weight


def test_attention_is_causal():
    m = Transformer(_cfg(), max_seq_len=16).eval()
    x = torch.randint(0, 256, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 256
    with torch.no_grad():
        a, b = m(x)[0], m(y)[0]
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_moe_with_one_expert_and_k1_equals_dense_ffn():
    cfg = _cfg("model.ffn=moe", "model.moe.n_experts=1", "model.moe.top_k=1",
               "model.moe.aux.switch=0", "model.moe.aux.z=0")
    torch.manual_seed(0)
    dense = SwiGLU(32, 64)
    for dispatch in ("grouped", "loop"):
        cfg.moe.dispatch = dispatch
        moe = MoELayer(cfg.moe, d_model=32, d_ff=64)
        with torch.no_grad():  # stacked (E, D, H) weights hold the transposed Linear weights
            moe.experts.w1.copy_(dense.w1.weight.t().unsqueeze(0))
            moe.experts.w3.copy_(dense.w3.weight.t().unsqueeze(0))
            moe.experts.w2.copy_(dense.w2.weight.t().unsqueeze(0))
        x = torch.randn(2, 8, 32)
        y, aux = moe(x)
        assert aux == {}
        torch.testing.assert_close(y, dense(x), rtol=1e-5, atol=1e-6)


def test_moe_placement_first_dense_and_every():
    m = Transformer(_cfg("model.ffn=moe", "model.n_layers=5", "model.moe.first_dense=1",
                         "model.moe.moe_every=2"), max_seq_len=8)
    kinds = [type(b.ffn).__name__ for b in m.blocks]
    assert kinds == ["SwiGLU", "MoELayer", "SwiGLU", "MoELayer", "SwiGLU"]


def test_capacity_drops_are_counted_in_the_stats():
    cfg = _cfg("model.ffn=moe", "model.moe.n_experts=4", "model.moe.top_k=2",
               "model.moe.capacity_factor=0.5")
    layer = MoELayer(cfg.moe, d_model=32, d_ff=64)
    layer.collect_stats = True
    layer(torch.randn(2, 16, 32))
    drop = float(layer.last_stats["drop_frac"])
    assert 0.5 <= drop < 1.0  # capacity 0.5 keeps at most half of the assignments
    assert float(layer.last_stats["load_E"].sum()) == 64 * (1 - drop)


def test_expert_dropout_acts_in_training_only():
    cfg = _cfg("model.ffn=moe", "model.moe.expert_dropout=0.5")
    layer = MoELayer(cfg.moe, d_model=32, d_ff=64)
    x = torch.randn(2, 8, 32)
    layer.eval()
    a, _ = layer(x)
    b, _ = layer(x)
    torch.testing.assert_close(a, b)  # no dropout at eval
    layer.train()
    torch.manual_seed(0)
    c, _ = layer(x)
    torch.manual_seed(1)
    d, _ = layer(x)
    assert not torch.allclose(c, d)  # different masks in training
    c.sum().backward()
    assert layer.experts.w13.grad is not None
