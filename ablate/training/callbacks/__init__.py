from ablate.training.callbacks.flush_metrics import FlushMetrics
from ablate.training.callbacks.pruning import OptunaPruning
from ablate.training.callbacks.router_health import RouterHealth
from ablate.training.callbacks.routing import RoutingStats
from ablate.training.callbacks.step_progress import StepProgress
from ablate.training.callbacks.throughput import Throughput

__all__ = ["FlushMetrics", "OptunaPruning", "RouterHealth", "RoutingStats", "StepProgress", "Throughput"]
