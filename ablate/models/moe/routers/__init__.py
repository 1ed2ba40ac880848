"""Routers: the contract and the parts' interfaces (`base`), the composed router (`composed`),
its config and the named bundles (`config`), scores, gates and selections. Importing this
package registers every part and every named router."""

import importlib
import pkgutil

from ablate.models.moe.routers import gates, scores  # noqa: F401 - registers them
from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput
from ablate.models.moe.routers.composed import ComposedRouter
from ablate.models.moe.routers.config import ComposedRouterConfig
from ablate.registry import ROUTERS

for _m in pkgutil.iter_modules(importlib.import_module(f"{__name__}.selections").__path__):
    importlib.import_module(f"{__name__}.selections.{_m.name}")
ROUTERS.default = ComposedRouterConfig.name  # `model.moe.router` without a name

__all__ = ["ComposedRouter", "ComposedRouterConfig", "Router", "RouterConfig", "RouterOutput"]
