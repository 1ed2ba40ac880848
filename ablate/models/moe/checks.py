"""Checks of a resolved MoE config against the router it builds, before anything runs:
causality, the aux losses' inputs, and a router the LM loss could not train.

The router is built on the meta device: no memory, no random numbers drawn.
"""

from __future__ import annotations

import torch

from ablate.errors import AblateError, ConfigError
from ablate.registry import AUX_LOSSES, CONFIG_CHECKS, ROUTERS


class FrozenRouterError(AblateError):
    """The LM loss cannot reach a learned router: it would train on the balance losses
    alone (uniform routing) and the MoE would look worse than it is."""


FROZEN_FIX = ("gate=auto or straight_through, normalize=false, top_k*granularity >= 2, "
              "or model.moe.allow_frozen_router=true")


def check_router(model_cfg) -> None:
    """Raise one ConfigError/FrozenRouterError for a router config that cannot work."""
    from ablate.models.moe.layer import build_router

    moe = model_cfg.moe
    with torch.device("meta"):
        router = build_router(moe.router, model_cfg.d_model, moe.routed_experts, moe.routed_top_k)
    name = moe.router.name
    if not router.causal and not moe.allow_noncausal_routing:
        raise ConfigError("model.moe.router.name", name,
                          f"a causal router ({', '.join(causal_routers())}) or "
                          "model.moe.allow_noncausal_routing=true",
                          "this router lets a token's output depend on later tokens")
    for loss, weight in moe.aux.items():
        missing = [a for a in getattr(AUX_LOSSES.get(loss).obj, "needs", ())
                   if a not in router.gives]
        if weight > 0 and missing:
            raise ConfigError(f"model.moe.aux.{loss}", weight, f"0 with router {name}",
                              f"router {name} gives no {missing[0].removesuffix('_TE')}")
    reason = router.frozen_reason()
    if reason and not moe.allow_frozen_router:
        raise FrozenRouterError(f"{reason}: the LM loss sends the router no gradient, only the "
                                f"balance losses would train it (allowed: {FROZEN_FIX})")


@CONFIG_CHECKS.register("router")
def check_moe_config(cfg) -> None:
    """load_config's hook: the router of an MoE model (config cannot import models)."""
    if cfg.model.ffn == "moe":
        check_router(cfg.model)


def causal_routers() -> list[str]:
    """The registered router names that are causal with their default options."""
    out = []
    for name in ROUTERS.names():
        entry = ROUTERS.get(name)
        try:
            with torch.device("meta"):
                router = entry.obj(entry.config(), 8, 8, 1)
        except Exception:  # noqa: BLE001 - a plugin router that needs other sizes
            continue
        if router.causal:
            out.append(name)
    return out
