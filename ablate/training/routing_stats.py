"""Routing diagnostics of each MoE layer, every n steps, and whether each router still learns.

RoutingStats: moe/l{i}/load_cv, max_load, dead_experts, drop_frac, router_entropy, z,
bias_norm, and their means over layers as moe/<name>; the run's expert-load matrix (layer x
expert, whole run) and its history, for the heatmaps.

RouterHealth, two metrics per MoE layer:
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

from collections import defaultdict

import lightning as L
import torch

from ablate.training.callbacks import log_now


def load_metrics(load_E: torch.Tensor) -> dict[str, float]:
    """load_E: tokens per expert. CV = std/mean; max_load = max/mean (1.0 is balanced)."""
    mean = load_E.mean().clamp_min(1e-12)
    return {
        "load_cv": float(load_E.std(unbiased=False) / mean),
        "max_load": float(load_E.max() / mean),
        "dead_experts": float((load_E == 0).sum()),
    }


class RoutingStats(L.Callback):
    def __init__(self, every: int):
        self.every = every
        self.load_sum: dict[int, torch.Tensor] = {}  # layer -> cumulative tokens per expert
        self.history: dict[int, list[list[float]]] = defaultdict(list)  # layer -> load fractions
        self.steps: list[int] = []  # the global steps at which `history` rows were taken

    def _layers(self, pl_module):
        return list(enumerate(pl_module.model.moe_layers))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        on = trainer.global_step % self.every == 0
        for _, layer in self._layers(pl_module):
            layer.collect_stats = on

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        layers = self._layers(pl_module)
        for i, layer in layers:
            if layer.last_load_E is not None:  # on its device: no host sync per step
                self.load_sum[i] = self.load_sum.get(i, 0) + layer.last_load_E.detach()
        if not layers or not layers[0][1].collect_stats:
            return
        per_layer: dict[str, list[float]] = defaultdict(list)
        out: dict[str, float] = {}
        self.steps.append(trainer.global_step)
        for i, layer in layers:
            stats = layer.last_stats
            if not stats:
                continue
            load = stats["load_E"].cpu()
            self.history[i].append((load / load.sum().clamp_min(1)).tolist())
            values = load_metrics(load)
            values["drop_frac"] = float(stats["drop_frac"])
            for key in ("router_entropy", "z"):
                if key in stats:
                    values[key] = float(stats[key])
            values.update(layer.router.stats())
            for key, v in values.items():
                out[f"moe/l{i}/{key}"] = v
                per_layer[key].append(v)
            layer.collect_stats = False
        out.update({f"moe/{key}": sum(vs) / len(vs) for key, vs in per_layer.items()})
        log_now(trainer, out)

    def load_history(self) -> dict:
        """{"layers", "steps", "load_fraction"[layer][step][expert]} for heatmaps over training."""
        ids = sorted(self.history)
        n = min([len(self.steps)] + [len(self.history[i]) for i in ids]) if ids else 0
        return {"layers": ids, "steps": self.steps[:n],
                "load_fraction": [self.history[i][:n] for i in ids]}

    def load_matrix(self) -> tuple[list[int], list[list[float]]]:
        """(layer ids, rows of load fractions over the whole run) for the heatmap."""
        ids = sorted(self.load_sum)
        rows = [(self.load_sum[i] / self.load_sum[i].sum().clamp_min(1)).tolist() for i in ids]
        return ids, rows


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
