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


def test_adamw_is_fused_on_cpu_and_steps_like_the_loop_one():
    """The fused kernel is the same AdamW: one step from the same gradients lands within
    float32 round-off of the for-loop implementation's."""
    m = _module("model.ffn=moe")
    opt = m.configure_optimizers()["optimizer"]
    assert opt.defaults["fused"] is True
    d = opt.defaults  # each group's lr as the schedule left it (warmup)
    groups = [{"params": g["params"], "lr": g["lr"], "weight_decay": g["weight_decay"]}
              for g in opt.param_groups]
    ref = torch.optim.AdamW(groups, betas=d["betas"], eps=d["eps"], foreach=False)
    before = [p.detach().clone() for p in m.parameters()]
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    fused = [p.detach().clone() for p in m.parameters()]
    with torch.no_grad():
        for p, b in zip(m.parameters(), before):
            p.copy_(b)
    ref.step()
    for p, f, b in zip(m.parameters(), fused, before):
        assert torch.allclose(p, f, atol=1e-6, rtol=1e-5)
        assert not torch.equal(f, b)  # it stepped


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


def test_val_bpb_is_loss_over_ln2_times_tokens_over_bytes(tmp_path):
    """By hand: the validation blocks' mean loss, over ln 2, times the targets they predict,
    over the UTF-8 bytes of the text those targets decode to (ASCII, so decoding is exact)."""
    import math

    import lightning as L

    from ablate.data.datamodule import LMDataModule

    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(f"line {i}: the quick brown fox jumps over the lazy dog"
                                for i in range(80)))
    for tokenizer, size in (("byte", None), ("bpe", 300)):
        cfg = load_config(overrides=[
            "data.source=text", f"data.files=[{path}]", "data.val_fraction=0.25",
            "data.block_size=16", "data.batch_size=4", f"data.tokenizer={tokenizer}",
            *([f"data.vocab_size={size}"] if size else []), "model.d_model=32",
            "model.n_heads=2", "model.d_ff=64", "model.n_layers=2"])
        dm = LMDataModule(cfg.data, tmp_path / "cache")
        dm.prepare_data()
        dm.setup("fit")
        cfg.model.vocab_size = dm.vocab_size
        module = LMModule(cfg.model, cfg.optim, 10, 16)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=3)
        [metrics] = trainer.validate(module, datamodule=dm, verbose=False)
        targets = torch.cat([dm.val_set[i][1] for i in range(3 * 4)])  # 3 batches of 4 blocks
        n_bytes = len(dm.tokenizer.decode(targets.numpy()).encode())
        expected = metrics["val/loss"] / math.log(2) * len(targets) / n_bytes
        assert abs(metrics["val/bpb"] - expected) < 1e-5 * expected, tokenizer
        if tokenizer == "byte":  # a byte per token
            assert abs(metrics["val/bpb"] - metrics["val/loss"] / math.log(2)) < 1e-5
        else:
            assert n_bytes > len(targets)  # merged tokens stand for several bytes
