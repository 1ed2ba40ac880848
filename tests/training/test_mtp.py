"""Multi-token prediction (ablate/models/mtp.py) and its place in the training step.

Depth 0 is today's model bit for bit: same parameters, same initial weights from the same
seed, equal logits, loss, gradients and weights after optimizer steps, against the frozen
copy of the model as it was before MLA and MTP (tests/models/legacy_transformer.py).
Depth k predicts token i+k+1 at position i from tokens <= i+k, its targets are y[:, k:]
(the block's own tokens: the last k positions are dropped), and the training loss adds
lambda / D * sum_k L^k while val/loss stays the next-token loss.

Legend: B batch, S block positions, V vocab.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from ablate.config.load import load_config
from ablate.errors import ConfigError
from ablate.models.mtp import mtp_losses
from ablate.models.transformer import Transformer
from ablate.training.accounting import param_counts
from ablate.training.module import LMModule, reward_losses
from tests.models import legacy_transformer

B, S, V = 2, 16, 256
SMALL = ["model.vocab_size=256", "model.d_model=32", "model.n_heads=2", "model.d_ff=64",
         "model.n_layers=2"]


def _cfg(*overrides):
    return load_config(overrides=[*SMALL, *overrides])


def _batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        tok = torch.randint(0, V, (B, S + 1), generator=g)
        out.append((tok[:, :-1], tok[:, 1:]))  # (x, y) as the data module cuts them
    return out


def _legacy_loss(model, batch, aux_weights):
    """The training loss as LMModule computed it before MTP (its `_losses` and the first
    line of `training_step` at commit 4a7dca6, verbatim but for `self`)."""
    x_BS, y_BS = batch
    logits_BSV, aux = model(x_BS)
    lm_T = F.cross_entropy(logits_BSV.float().flatten(0, 1), y_BS.flatten(), reduction="none")
    weights = dict(aux_weights)
    for name, (value, weight) in reward_losses(model.moe_layers, -lm_T.detach()).items():
        aux[name], weights[name] = value, weight
    weighted = {k: weights.get(k, 1.0) * v for k, v in aux.items()}
    lm = lm_T.mean()
    return (lm + sum(weighted.values()) if weighted else lm), logits_BSV


@pytest.mark.parametrize("ffn", [["model.ffn=dense"],
                                 ["model.ffn=moe", "model.moe.n_experts=4", "model.moe.top_k=2"]],
                         ids=["dense", "moe"])
def test_depth_0_is_bit_identical_to_the_model_before_mtp(ffn):
    cfg = _cfg(*ffn)
    assert cfg.model.mtp.depth == 0 and cfg.model.attention == "mha"  # the defaults
    torch.manual_seed(0)
    module = LMModule(cfg.model, cfg.optim, 100, S)
    torch.manual_seed(0)
    legacy = legacy_transformer.Transformer(cfg.model, S)
    new_params = dict(module.model.named_parameters())
    old_params = dict(legacy.named_parameters())
    assert ([(n, p.shape) for n, p in new_params.items()]
            == [(n, p.shape) for n, p in old_params.items()])
    for name, p in new_params.items():  # same seed, same draws: equal initial weights
        assert torch.equal(p, old_params[name]), name
    new_opt = torch.optim.AdamW(new_params.values(), lr=1e-2)
    old_opt = torch.optim.AdamW(old_params.values(), lr=1e-2)
    for step, batch in enumerate(_batches(3)):
        loss = module.training_step(batch, step)
        old_loss, old_logits = _legacy_loss(legacy, batch, dict(cfg.model.moe.aux))
        assert torch.equal(module.model(batch[0])[0], old_logits), step
        assert torch.equal(loss, old_loss), step
        new_opt.zero_grad()
        old_opt.zero_grad()
        loss.backward()
        old_loss.backward()
        for name, p in new_params.items():
            assert torch.equal(p.grad, old_params[name].grad), (step, name)
        new_opt.step()
        old_opt.step()
    for name, p in new_params.items():
        assert torch.equal(p, old_params[name]), name


def test_depth_1_starts_the_main_model_where_depth_0_does():
    """The MTP modules are built on a forked RNG: the main weights do not depend on depth,
    so the arms of an MTP sweep start from the same model for the same seed."""
    torch.manual_seed(0)
    plain = Transformer(_cfg().model, S)
    torch.manual_seed(0)
    mtp = Transformer(_cfg("model.mtp.depth=2").model, S)
    main = {n: p for n, p in mtp.named_parameters() if not n.startswith("mtp.")}
    assert list(main) == [n for n, _ in plain.named_parameters()]
    for name, p in plain.named_parameters():
        assert torch.equal(p, main[name]), name
    assert len(mtp.mtp.layers) == 2


def test_depth_k_targets_are_the_blocks_own_tokens():
    """Position i of depth k is scored against t_{i+k+1} = y[i+k]; the last k positions are
    dropped, so the last target is the block's last token t_S and nothing beyond is read."""
    depth = 3
    torch.manual_seed(0)
    m = Transformer(_cfg(f"model.mtp.depth={depth}").model, S)
    tok = torch.randint(0, V, (B, S + 1 + depth))  # the block t_0..t_S, then tokens it must not see
    x_BS, y_BS = tok[:, :S], tok[:, 1:S + 1]
    logits, _, mtp_logits = m.forward_mtp(x_BS)
    assert logits.shape == (B, S, V)
    assert [lg.shape for lg in mtp_logits] == [(B, S - k, V) for k in range(1, depth + 1)]
    losses = mtp_losses(mtp_logits, y_BS)
    for k, (lg, l_k) in enumerate(zip(mtp_logits, losses), start=1):
        target = tok[:, k + 1:S + 1]  # t_{i+k+1} for i = 0..S-1-k
        torch.testing.assert_close(l_k, F.cross_entropy(lg.flatten(0, 1), target.flatten()))
        assert int(target[0, -1]) == int(tok[0, S])  # the last target is the block's last token
    # a target misaligned by one would be caught: the logits must match y[:, k:] in shape
    with pytest.raises(AssertionError):
        mtp_losses([mtp_logits[0][:, :-1]], y_BS)


def test_mtp_logits_are_causal():
    """Depth k at position i may see tokens t_0..t_{i+k} (its input embeds t_{i+k}), no later."""
    torch.manual_seed(0)
    m = Transformer(_cfg("model.mtp.depth=2").model, S).eval()
    x = torch.randint(0, V, (1, S))
    t = 9
    y = x.clone()
    y[0, t + 1:] = (y[0, t + 1:] + 1) % V  # change every token after position t
    with torch.no_grad():
        a, b = m.forward_mtp(x)[2], m.forward_mtp(y)[2]
    for k, (la, lb) in enumerate(zip(a, b), start=1):
        keep = t - k + 1  # positions i with i + k <= t
        assert torch.equal(la[0, :keep], lb[0, :keep]), k
        assert not torch.allclose(la[0, keep:], lb[0, keep:]), k


def test_training_loss_adds_weighted_mtp_and_validation_ignores_it():
    cfg = _cfg("model.ffn=moe", "model.moe.n_experts=4", "model.moe.top_k=1",
               "model.mtp.depth=2", "model.mtp.weight=0.5")
    torch.manual_seed(0)
    m = LMModule(cfg.model, cfg.optim, 100, S)
    batch = _batches(1)[0]
    lm, aux, weighted, mtp = m._losses_mtp(batch, mtp=True)
    assert len(mtp) == 2 and all(float(l_k.detach()) > 0 for l_k in mtp)
    loss = m.training_step(batch, 0)
    torch.testing.assert_close(loss, lm + sum(weighted.values()) + 0.5 / 2 * (mtp[0] + mtp[1]))
    loss.backward()
    for name, p in m.model.mtp.named_parameters():  # every MTP weight learns
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # validation: the next-token loss of the main model; the MTP modules do not even run
    calls = []
    hook = m.model.mtp.register_forward_hook(lambda *a: calls.append(1))
    m.eval()
    m.on_validation_epoch_start()
    with torch.no_grad():
        val = m.validation_step(batch, 0)
        plain_lm, _, _ = m._losses(batch)
    hook.remove()
    assert calls == [] and torch.equal(val, plain_lm)


def test_train_mtp_metrics_are_logged(tiny, tmp_path, ablate_home):
    """A real Trainer on the real data: train/mtp/d1..dD reach the logged metrics, val/loss
    is there, and the names are ones a sweep may use as an objective."""
    from ablate.data import LMDataModule
    from ablate.tracking.metrics import check_metric, is_logged

    cfg = load_config(overrides=[*tiny, "model.mtp.depth=2"])
    dm = LMDataModule(cfg.data, cache_dir=str(tmp_path / "cache"))
    cfg.model.vocab_size = dm.vocab_size
    module = LMModule(cfg.model, cfg.optim, max_steps=2, block_size=cfg.data.block_size)
    trainer = L.Trainer(max_steps=2, limit_val_batches=1, val_check_interval=2, log_every_n_steps=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    logged = trainer.logged_metrics
    for name in ("train/mtp/d1", "train/mtp/d2", "val/loss"):
        assert name in logged and torch.isfinite(logged[name]), name
        check_metric(name, "objective.metric")
    assert ("train/mtp/d3" not in logged and is_logged("train/mtp/d3")
            and not is_logged("train/mtp/d0"))


def test_mtp_depth_must_leave_a_position():
    with pytest.raises(ConfigError, match=r"model\.mtp\.depth"):
        _cfg("model.mtp.depth=32", "data.block_size=32")
    with pytest.raises(ConfigError, match=r"model\.mtp\.weight"):
        _cfg("model.mtp.weight=-1")


def test_mtp_accounting():
    """MTP modules count in params_total and (training) flops_per_token, not params_active."""
    base = param_counts(_cfg().model, S)
    cfg = _cfg("model.mtp.depth=2")
    two = param_counts(cfg.model, S)
    built = Transformer(cfg.model, S)
    mtp_params = sum(p.numel() for p in built.mtp.parameters())
    assert (two["params_total"] == sum(p.numel() for p in built.parameters())
            == base["params_total"] + mtp_params)
    assert two["params_active"] == base["params_active"]
    assert two["kv_cache_bytes_per_token"] == base["kv_cache_bytes_per_token"]
    D, d_attn = 32, 2 * 32
    head = 2 * V * D  # the shared head runs once more per depth
    assert (two["flops_per_token"] - base["flops_per_token"]
            == 6 * (mtp_params + head) + 2 * 3 * S * d_attn)
