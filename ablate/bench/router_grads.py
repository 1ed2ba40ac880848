"""How much gradient the loss of a layer's output sends its router, per gate.

An `MoELayer` (E=8 experts of width 512, D=128, all aux weights 0) on a fixed random batch
(4 x 128 tokens), loss = mean(y^2): the norm of the router weight's gradient. A frozen
router measures round-off (~1e-11); one that learns, 1e-6 and more.
    python -m ablate.bench.router_grads
"""

from __future__ import annotations

import torch

from ablate.config.schema import MoEConfig
from ablate.models.moe.layer import MoELayer

CASES = [
    ("top_k=1 gate=prob normalize=true (the old default: frozen)", 1,
     {"gate": "prob", "normalize": True}),
    ("top_k=1 gate=prob normalize=false (Switch: raw probability)", 1,
     {"gate": "prob", "normalize": False}),
    ("top_k=1 gate=straight_through", 1, {"gate": "straight_through"}),
    ("top_k=1 default (gate=auto: E x probability)", 1, {}),
    ("top_k=2 default (gate=auto: prob, normalize=true)", 2, {}),
]


def router_grad(top_k: int, **router) -> float:
    torch.manual_seed(0)
    layer = MoELayer(MoEConfig(n_experts=8, top_k=top_k, aux={},
                               router={"name": "softmax_topk", **router}), 128, 512).train()
    x = torch.randn(4, 128, 128, generator=torch.Generator().manual_seed(1))
    y, _ = layer(x)
    y.pow(2).mean().backward()
    return layer.router.weight.grad.norm().item()


def main() -> None:
    print(__doc__.splitlines()[0])
    for label, k, r in CASES:
        print(f"{router_grad(k, **r):.2e}  {label}")


if __name__ == "__main__":
    main()
