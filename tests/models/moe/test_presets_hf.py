"""Model presets equal the reference implementations: Hugging Face `transformers`' own MoE
blocks, built from their config classes (small random sizes, float32, eval mode, nothing
downloaded), their weights copied into ablate's `MoELayer` of the same preset. Outputs
and the gradients with respect to the input and every weight must agree, on both
dispatch paths (grouped GEMM and the reference loop).

Legend: D width, H expert width, E routed experts, K per token, G groups, M kept groups.
"""

from __future__ import annotations

import pytest
import torch

from ablate.config.load import load_config
from ablate.models.moe.layer import MoELayer

transformers = pytest.importorskip("transformers")

D, H, B, S = 16, 8, 3, 10


def _hf_block(preset: str):
    """(the HF block, ablate overrides giving the same sizes)."""
    m = transformers.models
    if preset == "mixtral":
        cfg = m.mixtral.MixtralConfig(hidden_size=D, intermediate_size=H, num_local_experts=8,
                                      num_experts_per_tok=2)
        return m.mixtral.modeling_mixtral.MixtralSparseMoeBlock(cfg), dict(E=8, K=2)
    if preset == "olmoe":
        cfg = m.olmoe.OlmoeConfig(hidden_size=D, intermediate_size=H, num_experts=8,
                                  num_experts_per_tok=3, norm_topk_prob=False)
        return m.olmoe.modeling_olmoe.OlmoeSparseMoeBlock(cfg), dict(E=8, K=3)
    if preset == "qwen2_moe":  # the shared expert is 4 routed experts wide, sigmoid-gated
        cfg = m.qwen2_moe.Qwen2MoeConfig(hidden_size=D, moe_intermediate_size=H,
                                         shared_expert_intermediate_size=4 * H, num_experts=8,
                                         num_experts_per_tok=3, norm_topk_prob=False)
        return (m.qwen2_moe.modeling_qwen2_moe.Qwen2MoeSparseMoeBlock(cfg),
                dict(E=8, K=3, n_shared=4))
    if preset == "qwen3_moe":
        cfg = m.qwen3_moe.Qwen3MoeConfig(hidden_size=D, moe_intermediate_size=H, num_experts=8,
                                         num_experts_per_tok=3, norm_topk_prob=True)
        return m.qwen3_moe.modeling_qwen3_moe.Qwen3MoeSparseMoeBlock(cfg), dict(E=8, K=3)
    if preset == "deepseek_v2":
        cfg = m.deepseek_v2.DeepseekV2Config(
            hidden_size=D, num_attention_heads=2, num_key_value_heads=2,
            moe_intermediate_size=H, n_routed_experts=16, num_experts_per_tok=4,
            n_shared_experts=2, n_group=8, topk_group=3, topk_method="group_limited_greedy",
            routed_scaling_factor=16.0)
        return (m.deepseek_v2.modeling_deepseek_v2.DeepseekV2Moe(cfg),
                dict(E=16, K=4, n_shared=2, G=8, M=3))
    if preset == "deepseek_v3":
        cfg = m.deepseek_v3.DeepseekV3Config(
            hidden_size=D, num_attention_heads=2, num_key_value_heads=2,
            moe_intermediate_size=H, n_routed_experts=16, num_experts_per_tok=4,
            n_shared_experts=1, n_group=4, topk_group=2, routed_scaling_factor=2.5,
            norm_topk_prob=True)
        return (m.deepseek_v3.modeling_deepseek_v3.DeepseekV3MoE(cfg),
                dict(E=16, K=4, n_shared=1, G=4, M=2))
    raise KeyError(preset)


def _pairs(hf, layer: MoELayer) -> list[tuple[str, torch.Tensor, torch.Tensor, callable]]:
    """(name, HF tensor, ablate tensor, HF -> ablate layout) for every weight."""
    t = lambda w: w.transpose(-1, -2)  # noqa: E731 - HF (out, in) vs ablate (in, out)
    pairs = [("router", hf.gate.weight, layer.router.weight, lambda w: w),
             ("w13", hf.experts.gate_up_proj, layer.experts.w13, t),
             ("w2", hf.experts.down_proj, layer.experts.w2, t)]
    shared = getattr(hf, "shared_expert", None) or getattr(hf, "shared_experts", None)
    if shared is not None:
        pairs += [("shared.w1", shared.gate_proj.weight, layer.shared.w1.weight, lambda w: w),
                  ("shared.w3", shared.up_proj.weight, layer.shared.w3.weight, lambda w: w),
                  ("shared.w2", shared.down_proj.weight, layer.shared.w2.weight, lambda w: w)]
    if getattr(hf, "shared_expert_gate", None) is not None:
        pairs.append(("shared_gate", hf.shared_expert_gate.weight, layer.shared_gate.weight,
                      lambda w: w))
    return pairs


def build_pair(preset: str, dispatch: str, seed: int = 0):
    torch.manual_seed(seed)
    hf, size = _hf_block(preset)
    over = ["model.ffn=moe", f"model.moe.preset={preset}", f"model.d_model={D}", "model.n_heads=2",
            f"model.moe.n_experts={size['E']}", f"model.moe.top_k={size['K']}",
            "model.moe.granularity=1", f"model.moe.d_expert={H}", f"model.moe.d_shared={H}",
            f"model.moe.n_shared={size.get('n_shared', 0)}", f"model.moe.dispatch={dispatch}",
            "model.moe.capacity_factor=null", "model.moe.eval_capacity_factor=null"]
    if "G" in size:
        over += [f"model.moe.router.n_groups={size['G']}",
                 f"model.moe.router.topk_groups={size['M']}"]
    moe_cfg = load_config(overrides=over).model.moe
    layer = MoELayer(moe_cfg, d_model=D, d_ff=H)
    with torch.no_grad():
        for p in hf.parameters():  # HF leaves some weights uninitialised (torch.empty)
            p.copy_(torch.randn_like(p) * 0.3)
        if hasattr(hf.gate, "e_score_correction_bias"):  # V3's balancing bias: make it matter
            hf.gate.e_score_correction_bias.copy_(torch.randn(size["E"]) * 0.2)
            layer.router.balance.bias.copy_(hf.gate.e_score_correction_bias)
        for _, theirs, ours, to_ours in _pairs(hf, layer):
            ours.copy_(to_ours(theirs))
    return hf.eval().float(), layer.eval()


PRESETS = ["mixtral", "olmoe", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3"]


@pytest.mark.parametrize("dispatch", ["grouped", "loop"])
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_equals_huggingface_block(preset, dispatch):
    hf, layer = build_pair(preset, dispatch)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, S, D, generator=g)
    r = torch.randn(B, S, D, generator=g)  # a random readout: every output element matters
    x_hf, x_ab = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_hf = hf(x_hf)
    y_ab, _ = layer(x_ab)
    torch.testing.assert_close(y_ab, y_hf, atol=1e-5, rtol=1e-5)
    (y_hf * r).sum().backward()
    (y_ab * r).sum().backward()
    torch.testing.assert_close(x_ab.grad, x_hf.grad, atol=1e-5, rtol=1e-5)
    for name, theirs, ours, to_ours in _pairs(hf, layer):
        assert ours.grad is not None, f"{preset}: no gradient for {name}"
        torch.testing.assert_close(ours.grad, to_ours(theirs.grad), atol=1e-5, rtol=1e-5,
                                   msg=lambda m, n=name: f"{preset} {n}: {m}")
    assert layer.router.weight.grad.abs().sum() > 0  # the routers learn from the output
