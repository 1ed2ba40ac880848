"""Is each router still learning? Two metrics per MoE layer, every n steps:

- `moe/l{i}/router_grad_norm`: the norm of the gradient reaching the router's learned
  weights (LM + aux losses, before clipping). 0 for a frozen router.
- `moe/l{i}/routing_churn`: the fraction of a fixed probe batch's tokens whose first-choice
  expert changed since the last measurement. Falls towards 0 as routing settles; stuck at
  0 from the start, with a near-zero gradient, means a router that never learned.
Their means over layers are `moe/router_grad_norm` and `moe/routing_churn`.

The probe batch is the first 4 sequences of the first training batch; it runs in eval mode
without gradient, before the step's own forward, and draws no random number the run sees.
"""

from __future__ import annotations

import lightning as L
import torch

from ablate.training.callbacks.log_direct import log_now

PROBE_SEQUENCES = 4


class RouterHealth(L.Callback):
    def __init__(self, every: int):
        self.every = every
        self.probe_BS: torch.Tensor | None = None
        self.last_top1: list[torch.Tensor] | None = None
        self.pending: dict[str, torch.Tensor] = {}  # logged once the step is done

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.pending:  # at global_step = steps done, as every train metric of this step
            log_now(trainer, self.pending)
            self.pending = {}

    def _due(self, trainer) -> bool:
        return trainer.global_step % self.every == 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._due(trainer):
            return
        norms, out = [], {}
        for i, layer in enumerate(pl_module.model.moe_layers):
            grads = [p.grad for p in layer.router.learned_weights() if p.grad is not None]
            if not grads:
                continue
            norm = torch.stack([g.detach().float().pow(2).sum() for g in grads]).sum().sqrt()
            out[f"moe/l{i}/router_grad_norm"] = norm
            norms.append(norm)
        if norms:
            out["moe/router_grad_norm"] = torch.stack(norms).mean()
            self.pending.update(out)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._due(trainer) or not pl_module.model.moe_layers:
            return
        if self.probe_BS is None:
            self.probe_BS = batch[0][:PROBE_SEQUENCES].detach().clone()
        top1 = self._first_choices(trainer, pl_module.model)
        if self.last_top1 is not None:
            churn = [(a != b).float().mean() for a, b in zip(top1, self.last_top1)]
            self.pending.update({f"moe/l{i}/routing_churn": c for i, c in enumerate(churn)})
            self.pending["moe/routing_churn"] = torch.stack(churn).mean()
        self.last_top1 = top1

    @torch.no_grad()
    def _first_choices(self, trainer, model) -> list[torch.Tensor]:
        """Each MoE layer's first-choice expert per probe token, (T,) per layer."""
        seen: dict[int, torch.Tensor] = {}
        layers = model.moe_layers
        hooks = [layer.router.register_forward_hook(
            lambda mod, args, out, i=i: seen.__setitem__(i, out.preferred().detach()))
            for i, layer in enumerate(layers)]
        modes = [(m, m.training) for m in model.modules()]
        collect = [layer.collect_stats for layer in layers]
        device = self.probe_BS.device
        try:
            for layer in layers:
                layer.collect_stats = False
            model.eval()
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                    trainer.precision_plugin.forward_context():
                model(self.probe_BS)
        finally:
            for h in hooks:
                h.remove()
            for m, training in modes:
                m.train(training)
            for layer, c in zip(layers, collect):
                layer.collect_stats = c
        return [seen[i] for i in range(len(layers))]
