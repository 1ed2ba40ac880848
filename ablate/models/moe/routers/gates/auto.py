"""The default gate: `prob`, except where `prob` would freeze the router.

With one expert per token and `normalize: true` the renormalised gate is exactly 1 and the
router learns nothing from the LM loss (see prob.py). There `auto` is the straight-through
gate: the same forward value (1), with the gradient of the raw probability. The choice
was measured against the raw probability and a routed scale (README, "Which top-1 gate").
With K > 1, or without `normalize`, `auto` is `prob` exactly.
"""

from __future__ import annotations

from ablate.models.moe.routers.gates.prob import Prob
from ablate.models.moe.routers.gates.straight_through import StraightThrough
from ablate.models.moe.routers.parts import Gate
from ablate.registry import GATES


@GATES.register("auto")
class Auto(Gate):
    options = ("normalize",)

    def __init__(self, cfg, k: int):
        super().__init__(cfg, k)
        frozen = Prob(cfg, k).constant()
        self.resolved = StraightThrough(cfg, k) if frozen else Prob(cfg, k)

    def __call__(self, s_TE, ids_TK):
        return self.resolved(s_TE, ids_TK)
