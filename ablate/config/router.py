"""The base of every router's config: the keys every router reads. Each router registers a
subclass with its own keys and defaults (`ablate/models/moe/routers/`); `model.moe.router`
holds an instance of the one its `name` selects (`ablate.config.load`)."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.config.domains import below_one, non_negative, one_of
from ablate.registry import ROUTERS

INITS = ("normal", "uniform", "zeros")


@dataclass
class RouterConfig:
    """Every router's options; each key's domain is enforced by `ablate.config.domains`
    (the constructor's own checks stay for routers built without `load_config`)."""

    name: str = one_of("softmax_topk", ROUTERS.names, help="the router")
    init: str = one_of("normal", INITS, help="router weight init: normal | uniform (same "
                       "variance) | zeros")  # Switch: small-variance init for stability
    init_std: float = non_negative(0.02, help="std of the router weight init")
    jitter: float = below_one(0.0, help="multiplicative input noise x * U(1-eps, 1+eps) while "
                              "training (Switch)")


def default_router() -> RouterConfig:
    """The config of the default router (`model.moe.router` without a name)."""
    return ROUTERS.get(None).config()
