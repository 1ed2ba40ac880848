"""Multi-head latent attention (ablate/models/mla.py) against Hugging Face `transformers`'
DeepSeek-V3 attention (built from `DeepseekV3Config` at small sizes, nothing downloaded,
weights copied, float32, eval mode): outputs and gradients agree. The cache is the latent
the paper says (d_c + d_h^R floats per token and layer) and suffices to attend; the model
is causal.

Legend: B batch, S positions, D width, H heads, C kv_rank, Q q_rank, N head_dim, R rope_dim,
V v_head_dim.
"""

from __future__ import annotations

import pytest
import torch

from ablate.config.load import load_config
from ablate.config.schema import MLAConfig
from ablate.errors import ConfigError
from ablate.models.attention import rope_cache
from ablate.models.mla import MultiHeadLatentAttention
from ablate.models.transformer import Transformer
from ablate.training.accounting import KV_CACHE_BYTES, param_counts

transformers = pytest.importorskip("transformers")

B, S, D, H, C, N, R, V = 2, 9, 32, 2, 16, 12, 8, 10


def _pair(q_rank: int):
    """(HF DeepseekV3Attention, ablate's MLA with the same weights, [(hf, ours) params])."""
    hf_mod = transformers.models.deepseek_v3.modeling_deepseek_v3
    cfg = transformers.DeepseekV3Config(
        hidden_size=D, num_attention_heads=H, num_key_value_heads=H, q_lora_rank=q_rank or None,
        kv_lora_rank=C, qk_rope_head_dim=R, qk_nope_head_dim=N, v_head_dim=V,
        attn_implementation="eager", vocab_size=64, num_hidden_layers=1)
    assert cfg.rope_interleave  # DeepSeek's pair layout: the one ablate's apply_rope rotates
    torch.manual_seed(0)
    hf = hf_mod.DeepseekV3Attention(cfg, layer_idx=0).eval()
    # HF's MLA norms use eps 1e-6 whatever rms_norm_eps says
    ours = MultiHeadLatentAttention(MLAConfig(kv_rank=C, q_rank=q_rank, rope_dim=R, head_dim=N,
                                              v_head_dim=V), D, H, norm_eps=1e-6).eval()
    names = [("kv_a_proj_with_mqa", "wkv_a"), ("kv_a_layernorm", "kv_norm"), ("kv_b_proj", "wkv_b"),
             ("o_proj", "proj")]
    names += ([("q_a_proj", "wq_a"), ("q_a_layernorm", "q_norm"), ("q_b_proj", "wq_b")] if q_rank
              else [("q_proj", "wq")])
    pairs = []
    with torch.no_grad():
        for hf_name, our_name in names:
            w_hf = hf.get_submodule(hf_name).weight
            w_hf.normal_(0, 0.3)  # norm gains too: a swapped norm must show
            w = ours.get_submodule(our_name).weight
            assert w.shape == w_hf.shape, (our_name, w.shape, w_hf.shape)
            w.copy_(w_hf)  # same (out, in) layouts: per head [non-RoPE N | RoPE R] and [N | V]
            pairs.append((w_hf, w))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    return hf, ours, _rope_hf(hf_mod, cfg), pairs


def _rope_hf(hf_mod, cfg):
    rope = hf_mod.DeepseekV3RotaryEmbedding(cfg)
    return lambda x: rope(x, torch.arange(S)[None].expand(B, S))


@pytest.mark.parametrize("q_rank", [0, 24], ids=["q-full", "q-latent"])
def test_mla_equals_transformers_deepseek_v3_attention(q_rank):
    hf, ours, rope, pairs = _pair(q_rank)
    x_hf = torch.randn(B, S, D, requires_grad=True)
    x_ours = x_hf.detach().clone().requires_grad_(True)
    mask = torch.full((S, S), float("-inf")).triu(1)[None, None]  # causal, additive
    y_hf, _ = hf(x_hf, rope(x_hf), mask)
    cos, sin = rope_cache(S, R, 10000.0)
    y_ours = ours(x_ours, cos, sin)
    torch.testing.assert_close(y_ours, y_hf, rtol=1e-5, atol=1e-5)
    g_BSD = torch.randn(B, S, D)
    (y_hf * g_BSD).sum().backward()
    (y_ours * g_BSD).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_hf.grad, rtol=1e-5, atol=1e-5)
    for w_hf, w in pairs:
        torch.testing.assert_close(w.grad, w_hf.grad, rtol=1e-4, atol=1e-5)


def test_the_rope_part_matters():
    """The equality above is not vacuous: without RoPE on k^R the outputs differ."""
    hf, ours, rope, _ = _pair(0)
    x = torch.randn(B, S, D)
    mask = torch.full((S, S), float("-inf")).triu(1)[None, None]
    y_hf, _ = hf(x, rope(x), mask)
    cos, sin = rope_cache(S, R, 10000.0)
    assert not torch.allclose(ours(x, torch.ones_like(cos), torch.zeros_like(sin)), y_hf, atol=1e-3)


def _cfg(*overrides):
    return load_config(overrides=["model.vocab_size=256", "model.d_model=32", "model.n_heads=2",
                                  "model.d_ff=64", "model.n_layers=2", "model.attention=mla",
                                  "model.mla.kv_rank=16", "model.mla.rope_dim=8", *overrides]).model


@pytest.mark.parametrize("q_rank", [0, 12])
def test_the_cache_is_the_latent_and_enough_to_attend(q_rank):
    """Per token and layer the cache holds c^KV (d_c) and the shared k^R (d_h^R), and the
    queries of the last positions attend over that cache alone exactly as in the full pass."""
    torch.manual_seed(0)
    cfg = _cfg(f"model.mla.q_rank={q_rank}")
    attn = Transformer(cfg, max_seq_len=S).blocks[0].attn.eval()
    cos, sin = rope_cache(S, 8, cfg.rope_theta)
    x_BSD = torch.randn(B, S, 32)
    c_BSC, kr_BSR = attn.latent(x_BSD, cos, sin)
    assert c_BSC.shape == (B, S, 16) and kr_BSR.shape == (B, S, 8)  # d_c + d_h^R = 24 floats
    full_BSD = attn(x_BSD, cos, sin)
    for last in (1, 3):  # decoding one token, or a chunk of three, from the cache
        y_BLD = attn.attend(x_BSD[:, -last:], c_BSC, kr_BSR, cos, sin)
        torch.testing.assert_close(y_BLD, full_BSD[:, -last:], rtol=1e-5, atol=1e-6)
    # and the accounting reports the same size, in bytes, over both layers
    per_layer = c_BSC.shape[-1] + kr_BSR.shape[-1]
    assert param_counts(cfg, S)["kv_cache_bytes_per_token"] == 2 * per_layer * KV_CACHE_BYTES


def test_kv_cache_bytes_mha_vs_mla():
    mha = load_config(overrides=["model.vocab_size=256"]).model  # d_model 128, 4 heads, 4 layers
    mla = load_config(overrides=["model.vocab_size=256", "model.attention=mla"]).model
    head_dim = mha.d_model // mha.n_heads
    assert param_counts(mha, 128)["kv_cache_bytes_per_token"] == (
        2 * mha.n_heads * head_dim * mha.n_layers * KV_CACHE_BYTES)  # 2048
    assert param_counts(mla, 128)["kv_cache_bytes_per_token"] == (
        (mla.mla.kv_rank + mla.mla.rope_dim) * mla.n_layers * KV_CACHE_BYTES)  # 640
    # the defaults: MLA's attention about as large as MHA's (within 5%), a 3.2x smaller cache
    p_mha, p_mla = param_counts(mha, 128)["params_total"], param_counts(mla, 128)["params_total"]
    assert abs(p_mla - p_mha) < 0.05 * 4 * 4 * mha.d_model ** 2


@pytest.mark.parametrize("q_rank", [0, 12])
def test_mla_model_is_causal(q_rank):
    m = Transformer(_cfg(f"model.mla.q_rank={q_rank}"), max_seq_len=16).eval()
    x = torch.randint(0, 256, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 256
    with torch.no_grad():
        a, b = m(x)[0], m(y)[0]
    assert torch.equal(a[0, :10], b[0, :10])
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_mla_uses_its_own_rope_width_and_trains():
    m = Transformer(_cfg(), max_seq_len=16)
    assert m.rope_cos.shape == (16, 4)  # rope_dim / 2 frequencies, not head_dim / 2
    x = torch.randint(0, 256, (2, 16))
    logits, _ = m(x)
    logits.float().logsumexp(-1).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("override,key", [
    ("model.mla.rope_dim=7", "model.mla.rope_dim"),
    ("model.n_heads=3", "model.n_heads"),  # 32 / 3: no default head_dim
])
def test_mla_cross_field_checks(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _cfg(override)


def test_mla_head_dim_frees_the_head_count():
    cfg = _cfg("model.n_heads=3", "model.mla.head_dim=8", "model.mla.v_head_dim=6")
    m = Transformer(cfg, max_seq_len=8)
    assert m(torch.randint(0, 256, (1, 8)))[0].shape == (1, 8, 256)
    assert sum(p.numel() for p in m.parameters()) == param_counts(cfg, 8)["params_total"]
