"""Before a run trains: does the LM loss reach every learned router?

One forward/backward of the built model on one batch, the LM loss alone (no aux loss),
in training mode. A router that declares it learns from the LM loss (`learns_from ==
"lm"`) must receive a gradient at least FROZEN_RATIO times its layer's expert gradient:
a frozen router (a top-1 renormalised gate is exactly 1) measures ~1e-9 of it (float
round-off), a learning one 1e-2 or more (measured over every router and K in
tests/models/moe/test_learnability.py). Routers that learn from their own policy loss
or have no learned weights (`learns_from` says so) are not probed.

The probe draws no random number the run would see (`fork_rng`) and leaves no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ablate.models.moe.checks import FROZEN_FIX, FrozenRouterError

FROZEN_RATIO = 1e-6


@dataclass
class RouterGradient:
    layer: int  # index of the MoE layer (moe/l{i}/...)
    block: int  # index of the transformer block it sits in
    router: float  # gradient norm of the router's learned weights
    experts: float  # gradient norm of the layer's routed experts

    @property
    def frozen(self) -> bool:
        return not self.router > FROZEN_RATIO * self.experts


def _norm(params) -> float:
    grads = [p.grad.detach().float().pow(2).sum() for p in params if p.grad is not None]
    return float(torch.stack(grads).sum().sqrt()) if grads else 0.0


def router_gradients(model, idx_BS: torch.Tensor, targets_BS: torch.Tensor) -> list[RouterGradient]:
    """The LM-loss gradient reaching each probed router (those that learn from it)."""
    blocks = {id(b.ffn): i for i, b in enumerate(model.blocks)}
    was_training = [(m, m.training) for m in model.modules()]
    devices = [torch.cuda.current_device()] if idx_BS.is_cuda else []
    try:
        with torch.random.fork_rng(devices=devices):
            model.train()
            model.zero_grad(set_to_none=True)
            logits_BSV, _ = model(idx_BS)
            F.cross_entropy(logits_BSV.float().flatten(0, 1), targets_BS.flatten()).backward()
            out = []
            for i, layer in enumerate(model.moe_layers):
                if layer.router.learns_from != "lm":
                    continue
                out.append(RouterGradient(i, blocks[id(layer)],
                                          _norm(layer.router.learned_weights()),
                                          _norm(layer.experts.parameters())))
            return out
    finally:
        model.zero_grad(set_to_none=True)
        for m, training in was_training:
            m.train(training)


def check_routers_learn(model, idx_BS: torch.Tensor, targets_BS: torch.Tensor,
                        allow_frozen: bool = False) -> list[RouterGradient]:
    """Raise FrozenRouterError naming the first frozen layer, unless `allow_frozen`;
    returns the frozen ones (empty when all learn)."""
    frozen = [g for g in router_gradients(model, idx_BS, targets_BS) if g.frozen]
    if frozen and not allow_frozen:
        g = frozen[0]
        layer = model.moe_layers[g.layer]
        keys = layer.router.frozen_reason() or (
            f"model.moe.router.name={layer.router.cfg.name} (its gates do not depend on "
            "its weights)")
        raise FrozenRouterError(
            f"MoE layer {g.layer} (block {g.block}) cannot learn: {keys}; router gradient "
            f"{g.router:.1e} vs experts {g.experts:.1e} from the LM loss (allowed: {FROZEN_FIX})")
    return frozen
