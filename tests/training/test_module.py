import torch

from ablate.config.load import load_config
from ablate.training.module import LMModule
from ablate.training.schedule import warmup_cosine


def _module(*overrides):
    cfg = load_config(overrides=["model.vocab_size=256", "model.d_model=32", "model.n_heads=2",
                                 "model.d_ff=64", "model.n_layers=2", *overrides])
    return LMModule(cfg.model, cfg.optim, 100, 16)


def test_forward_shapes_dense_and_moe():
    x = torch.randint(0, 256, (3, 16))
    for ffn in ("dense", "moe"):
        logits, aux = _module(f"model.ffn={ffn}")(x)
        assert logits.shape == (3, 16, 256) and torch.isfinite(logits).all()
        assert set(aux) == ({"switch", "z"} if ffn == "moe" else set())


def test_training_step_adds_weighted_aux_and_reaches_router():
    m = _module("model.ffn=moe", "model.moe.aux.switch=0.5", "model.moe.aux.z=0.0")
    x = torch.randint(0, 256, (2, 16))
    loss = m.training_step((x, torch.roll(x, -1, 1)), 0)
    lm, aux, weighted = m._losses((x, torch.roll(x, -1, 1)))
    assert torch.allclose(loss, lm + 0.5 * aux["switch"])
    loss.backward()
    router = m.model.moe_layers[0].router.weight
    assert router.grad is not None and router.grad.abs().sum() > 0


def test_router_lr_multiplier_gets_its_own_group():
    m = _module("model.ffn=moe", "model.moe.router_lr_mult=0.1")
    opt = m.configure_optimizers()["optimizer"]
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs[0] == lrs[-1] * 0.1


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 100, 0.1) == 0.1
    assert warmup_cosine(9, 10, 100, 0.1) == 1.0
    assert abs(warmup_cosine(100, 10, 100, 0.1) - 0.1) < 1e-9


def test_divergence_raises_with_the_step():
    import pytest

    from ablate.training.module import DivergenceError

    m = _module("model.ffn=moe")
    with torch.no_grad():
        m.model.embed.weight.fill_(float("nan"))
    x = torch.randint(0, 256, (2, 16))
    with pytest.raises(DivergenceError, match="step 0"):
        m.training_step((x, x), 0)
