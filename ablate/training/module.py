"""The LightningModule: LM loss + weighted aux losses, AdamW with warmup and the schedule's
decay (cosine or warmup-stable-decay: `schedule.py`)."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F

from ablate.config.schema import ModelConfig, OptimConfig
from ablate.models.mtp import mtp_losses
from ablate.models.transformer import Transformer
from ablate.training.schedule import lr_multiplier


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite: the trial fails with this reason, the sweep goes on."""


def reward_losses(layers, reward_T: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
    """Every router's reward losses, each averaged over the layers that have it."""
    found: dict[str, list[tuple[torch.Tensor, float]]] = {}
    for layer in layers:
        for name, pair in layer.router.reward_losses(reward_T).items():
            found.setdefault(name, []).append(pair)
    return {name: (sum(v for v, _ in pairs) / len(pairs), pairs[0][1])
            for name, pairs in found.items()}


class LMModule(L.LightningModule):
    """Causal LM on (x, y) token blocks; `model` is any `Transformer` config, dense or MoE."""

    def __init__(self, model: ModelConfig, optim: OptimConfig, max_steps: int, block_size: int):
        super().__init__()
        self.model_cfg, self.optim_cfg, self.max_steps = model, optim, max_steps
        self.model = Transformer(model, block_size)
        self.aux_weights = dict(model.moe.aux)
        self._loss_ema: torch.Tensor | None = None
        self.train_logged_step: int | None = None  # the step of the train/ values last logged

    def forward(self, idx_BS: torch.Tensor):
        return self.model(idx_BS)

    def _losses(self, batch):
        """(next-token LM loss, unscaled aux losses, weighted aux losses)."""
        lm, aux, weighted, _ = self._losses_mtp(batch, mtp=False)
        return lm, aux, weighted

    def _losses_mtp(self, batch, mtp: bool):
        """_losses and, when `mtp` and model.mtp.depth > 0, the MTP losses [L^1..L^D]
        (unscaled; mtp.py): one forward of the main model feeds both."""
        x_BS, y_BS = batch[0], batch[1]  # validation batches also carry their bytes
        if mtp and self.model.mtp is not None:
            logits_BSV, aux, mtp_logits = self.model.forward_mtp(x_BS)
        else:  # depth 0, validation: exactly the plain model's forward
            (logits_BSV, aux), mtp_logits = self.model(x_BS), []
        lm_T = F.cross_entropy(logits_BSV.float().flatten(0, 1), y_BS.flatten(), reduction="none")
        weights = dict(self.aux_weights)
        if self.training:  # losses a router makes from the reward = -(the token's LM loss)
            for name, (value, weight) in reward_losses(self.model.moe_layers,
                                                       -lm_T.detach()).items():
                aux[name], weights[name] = value, weight
        weighted = {k: weights.get(k, 1.0) * v for k, v in aux.items()}
        return lm_T.mean(), aux, weighted, mtp_losses(mtp_logits, y_BS)

    def training_step(self, batch, batch_idx):
        lm, aux, weighted, mtp = self._losses_mtp(batch, mtp=True)
        loss = lm + sum(weighted.values()) if weighted else lm
        if mtp:  # DeepSeek-V3 eq. 25: lambda / D * sum_k L^k
            loss = loss + self.model_cfg.mtp.weight / len(mtp) * sum(mtp)
        if not bool(torch.isfinite(loss)):  # stop now: every later step would be wasted
            raise DivergenceError(f"the training loss is {float(loss.detach())} at step "
                                  f"{self.global_step} (diverged: lower optim.lr or raise "
                                  "model.moe.aux.z)")
        self._loss_ema = (lm.detach() if self._loss_ema is None
                          else 0.9 * self._loss_ema + 0.1 * lm.detach())
        if self._logs_this_step():
            # > 1: above its recent average
            self.log("train/loss_spike", lm.detach() / self._loss_ema)
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/lm_loss", lm)
            for k in aux:
                self.log(f"train/aux/{k}", aux[k].detach())
                self.log(f"train/aux_weighted/{k}", weighted[k].detach())
            for k, l_k in enumerate(mtp, start=1):
                # unscaled; val/loss stays next-token only
                self.log(f"train/mtp/d{k}", l_k.detach())
        return loss

    def _logs_this_step(self) -> bool:
        """Whether Lightning sends this step's train metrics to the logger (its own rule:
        every `log_every_n_steps` optimizer steps, or when stopping). `self.log` costs about a
        millisecond a call on CPU (its result collection), so a step that is not logged does
        not call it: the same points reach MLflow, at ~4% less time per step."""
        trainer = self._trainer
        if trainer is None:  # outside a Trainer (tests calling training_step): log
            return True
        step, n = self.global_step + 1, trainer.log_every_n_steps  # the step being trained
        val = trainer.val_check_interval
        # and every validation step: ablate checkpoints there, and FlushMetrics writes the
        # step's train values with the checkpoint (a resumed curve has no gap)
        val_step = (isinstance(val, int)
                    and step % max(1, val // trainer.accumulate_grad_batches) == 0)
        due = (bool(n) and step % n == 0) or val_step or trainer.should_stop
        if due:
            self.train_logged_step = step  # FlushMetrics: these train values are this step's
        return due

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        for layer in self.model.moe_layers:  # aux-loss-free bias balancing, once per step
            if layer.last_load_E is None:
                continue
            load_E = layer.last_load_E
            if self.trainer.world_size > 1:  # every rank must apply the same bias update
                load_E = self.trainer.strategy.reduce(load_E.clone(), reduce_op="sum")
            layer.router.after_step(load_E)

    def on_validation_epoch_start(self) -> None:
        self._val_losses: list[torch.Tensor] = []
        self._val_nats_bytes: list[torch.Tensor] = []

    def validation_step(self, batch, batch_idx):
        lm, _, _ = self._losses(batch)
        self._val_losses.append(lm.detach())
        if len(batch) > 2:  # the UTF-8 bytes of text the targets stand for
            self._val_nats_bytes.append(torch.stack([lm.detach().double() * batch[1].numel(),
                                                batch[2].sum().double()]))
        return lm

    def on_validation_epoch_end(self) -> None:
        if not self._val_losses:
            return
        loss = torch.stack(self._val_losses).mean()  # the LM loss only, no aux terms
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/ppl", torch.exp(loss.clamp(max=20.0)), sync_dist=True)
        if len(self._val_nats_bytes) == len(self._val_losses):
            # bits per byte: the batches' summed nats over the bytes of text they predicted,
            # in bits; whatever the tokenizer, the same text gives comparable numbers
            nats, n_bytes = torch.stack(self._val_nats_bytes).sum(0)
            self.log("val/bpb", (nats / math.log(2) / n_bytes).float(), sync_dist=True)

    def param_groups(self) -> list[dict]:
        """AdamW's groups: decayed matrices, undecayed vectors, routers (own lr multiplier)."""
        o = self.optim_cfg
        decay, no_decay, router = [], [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if name.endswith("router.weight") or ".router." in name:
                router.append(p)
            elif p.dim() >= 2:
                decay.append(p)
            else:
                no_decay.append(p)
        groups = [
            {"params": decay, "weight_decay": o.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if router:
            mult = self.model_cfg.moe.router_lr_mult
            groups.append({"params": router, "weight_decay": 0.0, "lr": o.lr * mult})
        return groups

    def configure_optimizers(self):
        o = self.optim_cfg
        groups = self.param_groups()
        # on CPU the fused kernel: one pass per parameter instead of ~10 ops (5% of a small
        # model's step, measured); elsewhere torch's default (foreach on CUDA)
        cpu = all(p.device.type == "cpu" for g in groups for p in g["params"])
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                                fused=True if cpu else None)
        # read at every step: a wsd budget's branch sets `max_steps` to its own length
        sched = torch.optim.lr_scheduler.LambdaLR(opt,
                                                  lambda s: lr_multiplier(s, o, self.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
