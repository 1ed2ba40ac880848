from ablate.models.moe.experts import RoutedExperts
from ablate.models.moe.layer import MoELayer, build_router
from ablate.models.moe.routers import Router, RouterConfig, RouterOutput

__all__ = ["MoELayer", "RoutedExperts", "Router", "RouterConfig", "RouterOutput", "build_router"]
