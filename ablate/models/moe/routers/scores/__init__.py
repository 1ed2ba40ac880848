"""Scores: the routing logits -> per-expert affinities (one file per score)."""
