"""A run with its starting weights: what `ablate train`, every sweep trial and the DDP
followers call.

`run(cfg, ...)` prepares where the weights start (`init.*`: nothing (scratch), a
checkpoint, or an upcycled dense model: a given file, or the dense parent trained here
first) and trains (`ablate.training.run.train`, which loads them and applies
`init.freeze`). `ablate.training.run` never imports this module: the dense parent is a
plain run of its own.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ablate.config.derived import moe_layer_ids
from ablate.config.schema import RunConfig
from ablate.errors import ConfigError
from ablate.tracking.tags import (
    DENSE_PARENT_STEPS,
    INIT,
    INIT_WEIGHTS,
    UPCYCLE_NOISE,
    UPCYCLED_FROM,
)
from ablate.training.dense_parent import dense_parent, parent_run_of
from ablate.training.run import TrainResult, train
from ablate.training.upcycle import ROUTER, upcycle
from ablate.training.weights import InitialWeights, load_weights

EXACT = "weights of this exact model, or of its dense counterpart (MoE model)"
COUNTERPART = ("the dense counterpart of this model (same sizes outside the FFN; dense FFN "
               "layers of a hybrid model as wide as model.d_ff)")


def prepare_init(cfg: RunConfig, *, experiment: str, tracking_uri: str | None = None,
                 parent_run_id: str | None = None) -> InitialWeights | None:
    """cfg.init's starting weights for `train`, or None to start from scratch. Trains (or
    finds cached) the dense parent when `init.dense_steps` asks for one."""
    i = cfg.init
    if i.from_checkpoint and i.dense_steps:
        raise ConfigError("init.dense_steps", i.dense_steps, "0 when init.from_checkpoint is set",
                          "two sources for the starting weights")
    tags: dict[str, str] = {}
    if i.dense_steps:
        path, parent = dense_parent(cfg, experiment=experiment, tracking_uri=tracking_uri,
                                    parent_run_id=parent_run_id)
        source = str(path)
        tags[DENSE_PARENT_STEPS] = str(i.dense_steps)
    elif i.from_checkpoint:
        source = str(Path(i.from_checkpoint).expanduser())
        parent = parent_run_of(Path(source).parent)
    else:
        return None
    sd = load_weights(source)
    tags[INIT_WEIGHTS] = source
    is_dense = not any(".ffn.router." in k or ".ffn.experts." in k for k in sd)
    if not (moe_layer_ids(cfg.model) and is_dense):  # the same model's weights
        return InitialWeights(sd, source, {**tags, INIT: "checkpoint"}, EXACT)
    gen = torch.Generator().manual_seed(cfg.trainer.seed)  # not the global RNG
    state = upcycle(sd, cfg.model, i.upcycle, i.noise, gen, source=source)
    tags.update({INIT: f"upcycle_{i.upcycle}", UPCYCLE_NOISE: str(i.noise),
                 UPCYCLED_FROM: parent or source})
    return InitialWeights(state, source, tags, COUNTERPART, fresh=ROUTER)


def run(cfg: RunConfig, *, experiment: str, tracking_uri: str | None = None,
        parent_run_id: str | None = None, **train_kwargs) -> TrainResult:
    """Prepare `cfg`'s starting weights, then train it as one MLflow run (`train`'s
    keywords: run_name, tags, trial, progress, on_run, ckpt_dir, prune_follower, params)."""
    initial = prepare_init(cfg, experiment=experiment, tracking_uri=tracking_uri,
                           parent_run_id=parent_run_id)
    return train(cfg, experiment=experiment, tracking_uri=tracking_uri,
                 parent_run_id=parent_run_id, initial=initial, **train_kwargs)
