"""Parallelism applied to a built model from outside (torchtitan's `parallelize`).

The model under `ablate/models/` is single-process maths: it never asks which rank it is on.
This package is the only place that does:

- `world.py`: the one answer to "which rank am I, of how many", joining and leaving the
  process group, and rank 0 sharing what the ranks of a trial train;
- `sharded_experts.py`: the routed experts sharded over the ranks, tokens exchanged with
  all_to_all (the only module that runs collectives inside a forward);
- `expert_parallel.py`: `parallelize` (swap the sharded experts into a built model, keep them
  out of DDP's all-reduce) and global gradient clipping;
- `checkpoint.py`: checkpoints that hold every expert whatever the world size.

A new kind of parallelism is one more file here, applied by `parallelize`.
"""
