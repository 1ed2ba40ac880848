"""Built-in routers: importing this package registers every router file in it."""

import importlib
import pkgutil

from ablate.models.moe.routers.base import Router, RouterConfig, RouterOutput

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["Router", "RouterConfig", "RouterOutput"]
