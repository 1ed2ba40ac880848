"""No score: the router has no learned weight and no logits (hash routing). Selections
that need scores, noise and score-reading gates are refused with it."""

from __future__ import annotations

from ablate.models.moe.routers.parts import Score
from ablate.registry import SCORES


@SCORES.register("none")
class NoScore(Score):
    learned = False

    def __call__(self, h_TE):
        raise RuntimeError("score=none has no affinities")
