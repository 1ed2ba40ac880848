"""The default gate: `prob`, except where `prob` would freeze the router.

With one expert per token and `normalize: true` the renormalised gate is exactly 1 and the
router learns nothing from the LM loss (see prob.py). There `auto` is `scaled_prob`: E times
the raw probability, about 1 for a near-uniform router (the dense FFN's scale), with the
probability's gradient. Chosen by measurement (README, "Which top-1 gate"): at E=8, k=1,
300 steps, 2 paired seeds on two corpora it beat the raw probability (Switch) and the
straight-through gate on both, and the frozen gate by 0.27 nats.
With K > 1, or without `normalize`, `auto` is `prob` exactly.
"""

from __future__ import annotations

from ablate.models.moe.routers.gates.prob import Prob
from ablate.models.moe.routers.gates.scaled_prob import ScaledProb
from ablate.models.moe.routers.parts import Gate
from ablate.registry import GATES


@GATES.register("auto")
class Auto(Gate):
    options = ("normalize",)

    def __init__(self, cfg, k: int):
        super().__init__(cfg, k)
        frozen = Prob(cfg, k).constant()
        self.resolved = ScaledProb(cfg, k) if frozen else Prob(cfg, k)

    def __call__(self, s_TE, ids_TK):
        return self.resolved(s_TE, ids_TK)
