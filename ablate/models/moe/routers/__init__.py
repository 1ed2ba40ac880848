"""Routers: the contract (`base`), the composed router and its parts, and the named
bundles. Importing this package registers every part and every named router."""

import importlib
import pkgutil

from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.models.moe.routers.composed import ComposedRouter
from ablate.models.moe.routers.config import RoutingConfig
from ablate.registry import ROUTERS

for _pkg in ("scores", "selections", "gates"):
    _mod = importlib.import_module(f"{__name__}.{_pkg}")
    for _m in pkgutil.iter_modules(_mod.__path__):
        importlib.import_module(f"{__name__}.{_pkg}.{_m.name}")
importlib.import_module(f"{__name__}.bundles")
ROUTERS.default = RoutingConfig.name  # `model.moe.router` without a name

__all__ = ["ComposedRouter", "Router", "RouterConfig", "RouterOutput", "RoutingConfig"]
