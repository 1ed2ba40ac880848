from ablate.models.mlp import SwiGLU
from ablate.models.transformer import Transformer

__all__ = ["SwiGLU", "Transformer"]
