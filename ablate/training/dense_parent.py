"""The dense parent of an upcycled MoE (`init.dense_steps`): its config, and its weights,
trained once per config and cached. It calls `train` like any caller of a run does; `train`
knows nothing of it."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import random
from pathlib import Path

import torch

from ablate import paths
from ablate.config.derived import fill, moe_layer_ids
from ablate.config.load import load_config, to_yaml
from ablate.config.schema import BudgetConfig, InitConfig, RunConfig, TrackingConfig
from ablate.errors import ConfigError
from ablate.tracking.naming import arm_name
from ablate.tracking.tags import ARM, DENSE_PARENT, DENSE_PARENT_SHA, ROLE
from ablate.training.run import train


def dense_parent_config(cfg: RunConfig) -> RunConfig:
    """The dense model an MoE config is upcycled from: same everything (data, seed, optim,
    attention sizes), model.ffn=dense, trainer.max_steps=init.dense_steps.

    Its d_ff: copy mode -> the routed expert width H (every expert is the whole dense FFN);
    split mode -> the coarse expert width (model.moe.d_expert or model.d_ff), so granularity
    m cuts it into m experts. With granularity 1 and no d_expert both are model.d_ff, so
    copy and split arms of one study share one parent. Fields that do not shape a dense model
    (model.moe, budget, init, tracking) are reset, so every MoE layout shares the parent."""
    m = cfg.model
    width = m.moe.expert_width  # copy: one routed expert
    if cfg.init.upcycle != "copy":
        width *= m.moe.granularity  # split: the coarse expert the m fine ones are cut from
    if width != m.d_ff and len(moe_layer_ids(m)) < m.n_layers:
        raise ConfigError("init.dense_steps", cfg.init.dense_steps,
                          f"a parent width ({width}) equal to model.d_ff ({m.d_ff}) when the model "
                          "keeps dense FFN layers (first_dense / moe_every)",
                          "the dense layers could not be copied from the parent")
    dense = copy.deepcopy(cfg)
    dense.model.ffn, dense.model.d_ff = "dense", width
    # the default MoE block (validated router dataclass), its sizes resolved for this d_ff
    dense.model.moe = fill(load_config().model.moe, width)
    dense.budget, dense.init, dense.tracking = BudgetConfig(), InitConfig(), TrackingConfig()
    dense.trainer.max_steps = cfg.init.dense_steps
    dense.trainer.budgets = None  # a starting point: its own budgets would measure nothing
    dense.trainer.progress = False  # the trial's own bar (or none) is the one shown
    return dense


@contextlib.contextmanager
def _rng_preserved():
    """Training a parent re-seeds the global RNGs; restore them so a trial that trained the
    parent continues exactly like one that found it cached."""
    import numpy as np

    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        yield
    random.setstate(py)
    np.random.set_state(npy)


def dense_parent(cfg: RunConfig, *, experiment: str, tracking_uri: str | None,
                 parent_run_id: str | None) -> tuple[Path, str | None]:
    """Weights of cfg's dense parent, trained once per config (cached under
    $ABLATE_HOME/checkpoints/dense-parents/<sha>/; a file lock makes parallel trials that
    share a parent wait for one of them). Returns (weights path, the parent's MLflow run id)."""
    from filelock import FileLock

    dense = dense_parent_config(cfg)
    text = to_yaml(dense)
    sha = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = paths.checkpoint_dir("dense-parents", sha)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights.pt"
    with FileLock(str(folder / ".lock")):
        if not weights.is_file():
            # its own arm name: never grouped with a dense arm of the same width
            arm = arm_name(dense, seed=False).replace("dense-", "dense-parent-", 1)
            tags = {ROLE: DENSE_PARENT, ARM: arm,
                    DENSE_PARENT_SHA: sha}
            with _rng_preserved():
                result = train(dense, experiment=experiment, tracking_uri=tracking_uri,
                               parent_run_id=parent_run_id, run_name=f"{arm}-{sha[:8]}",
                               tags=tags, params={"arm": arm}, weights_out=str(weights))
            (folder / "config.yaml").write_text(text)
            meta = {"run_id": result.run_id, "experiment": experiment}
            (folder / "parent.json").write_text(json.dumps(meta))
    return weights, parent_run_of(folder)


def parent_run_of(folder: Path) -> str | None:
    """The MLflow run that wrote the weights in `folder` (parent.json beside them), if any."""
    try:
        return json.loads((folder / "parent.json").read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
