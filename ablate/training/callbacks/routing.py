"""Routing diagnostics per MoE layer, every n steps, and the run's expert-load matrix.

Metric names (DESIGN.md): moe/l{i}/load_cv, max_load, dead_experts, drop_frac,
router_entropy, z, bias_norm; their means over layers as moe/<name>.
"""

from __future__ import annotations

from collections import defaultdict

import lightning as L
import torch

from ablate.training.callbacks.log_direct import log_now


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
