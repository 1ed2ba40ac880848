from ablate.models.moe.experts import RoutedExperts
from ablate.models.moe.layer import MoELayer, build_router
from ablate.models.moe.routers import Router, RouterConfig, RouterOutput
from ablate.models.moe.sizes import MoEDims, moe_dims

__all__ = ["MoELayer", "RoutedExperts", "Router", "RouterConfig", "RouterOutput", "MoEDims",
           "build_router", "moe_dims"]
