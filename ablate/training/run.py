"""One training run, start to finish: data -> model -> Trainer -> one MLflow run.

Used by `ablate train` directly and by the sweep objective for each trial.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from ablate import paths
from ablate.config.load import flatten, to_dict, to_yaml
from ablate.config.schema import RunConfig
from ablate.tracking import runs, store
from ablate.tracking.logger import MlflowRunLogger
from ablate.tracking.naming import arm_name
from ablate.training.accounting import param_counts
from ablate.training.callbacks import OptunaPruning, RoutingStats, StepProgress, Throughput


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, float]
    sizes: dict[str, int]
    pruned: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def build_datamodule(cfg: RunConfig):
    from ablate.data import LMDataModule

    return LMDataModule(cfg.data, paths.cache_dir(), seed=cfg.trainer.seed)


def _trainer(cfg: RunConfig, logger, callbacks, progress_bar: bool,
             checkpointing: bool = False) -> L.Trainer:
    t = cfg.trainer
    gpu = t.accelerator in ("gpu", "cuda")
    return L.Trainer(
        max_steps=t.max_steps,
        val_check_interval=t.val_every * t.accumulate_grad_batches,
        check_val_every_n_epoch=None,  # validate every n steps, across epoch boundaries
        limit_val_batches=t.val_batches,
        log_every_n_steps=t.log_every,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        gradient_clip_val=cfg.optim.grad_clip or None,
        accumulate_grad_batches=t.accumulate_grad_batches,
        # MoE scatter ops have no deterministic CUDA kernel: warn there (PITFALLS #15)
        deterministic=("warn" if gpu else True) if t.deterministic else False,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=checkpointing,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        num_sanity_val_steps=0,
    )


def train(cfg: RunConfig, *, experiment: str, tracking_uri: str | None = None,
          run_name: str | None = None, parent_run_id: str | None = None,
          tags: dict[str, str] | None = None, trial=None, progress=None,
          on_run=None, weights_out: str | None = None, ckpt_dir=None) -> TrainResult:
    from ablate.reporting.heatmap import expert_load_figure
    from ablate.training.module import LMModule

    cfg = copy.deepcopy(cfg)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    if cfg.model.vocab_size is None:
        cfg.model.vocab_size = dm.vocab_size
    sizes = param_counts(cfg.model, cfg.data.block_size)
    module = LMModule(cfg.model, cfg.optim, cfg.trainer.max_steps, cfg.data.block_size)
    init_tags = {}
    if cfg.init.from_checkpoint or cfg.init.dense_steps or cfg.init.freeze != "none":
        from ablate.training.upcycle import prepare_init

        init_tags = prepare_init(cfg, module.model, experiment=experiment,
                                 tracking_uri=tracking_uri, parent_run_id=parent_run_id)

    client = store.client(tracking_uri)
    exp_id = store.ensure_experiment(client, experiment)
    all_tags = runs.standard_tags(**{"ablate.data_fingerprint": dm.fingerprint, "ablate.arm": arm_name(cfg)})
    if cfg.model.ffn == "moe" and cfg.model.moe.allow_noncausal_routing:
        all_tags["ablate.noncausal_routing"] = "true"  # such runs see future tokens
    all_tags.update(init_tags)
    all_tags.update(tags or {})
    run_id = runs.create_run(client, exp_id, run_name or cfg.tracking.run_name or arm_name(cfg),
                             all_tags, parent_run_id)
    if on_run is not None:
        on_run(run_id)
    runs.log_params(client, run_id, {**flatten(to_dict(cfg)), **sizes})
    client.log_text(run_id, to_yaml(cfg), "config.yaml")
    logger = MlflowRunLogger(client, run_id)
    logger.log_metrics({k: float(v) for k, v in sizes.items()}, step=0)

    routing = RoutingStats(cfg.tracking.routing_stats_every)
    pruning = OptunaPruning(trial) if trial is not None else None
    callbacks: list[L.Callback] = [Throughput(dm.tokens_per_batch, cfg.trainer.log_every)]
    if cfg.model.ffn == "moe":
        callbacks.append(routing)
    if pruning:
        callbacks.append(pruning)
    if progress is not None:
        callbacks.append(StepProgress(*progress))
    bar = cfg.trainer.progress and progress is None
    if bar:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    resume_from = None
    if ckpt_dir is not None:  # per-trial directory: a retried trial resumes where it died
        from lightning.pytorch.callbacks import ModelCheckpoint

        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                         every_n_train_steps=cfg.trainer.val_every))
        last = Path(ckpt_dir) / "last.ckpt"
        resume_from = str(last) if last.exists() else None
        if resume_from:
            client.set_tag(run_id, "ablate.resumed_from", resume_from)
    trainer = _trainer(cfg, logger, callbacks, bar, checkpointing=ckpt_dir is not None)
    logger.step_source = lambda: trainer.global_step
    status, state = "FAILED", "FAILED"
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=True)
        pruned = bool(pruning and pruning.pruned)
        if not pruned and trainer.global_step % cfg.trainer.val_every:
            trainer.validate(module, datamodule=dm, verbose=False)  # always end on a val/loss
        if weights_out:
            from ablate.training.upcycle import save_weights

            save_weights(module.model, weights_out)
        logger.flush()
        ids, rows = routing.load_matrix()
        if rows:
            client.log_dict(run_id, {"layers": ids, "load_fraction": rows}, "routing/expert_load.json")
            client.log_figure(run_id, expert_load_figure(ids, rows, arm_name(cfg)),
                              "routing/expert_load.png")
        status, state = "FINISHED", ("PRUNED" if pruned else "COMPLETE")
        if ckpt_dir is not None:  # finished: the resume point is no longer needed
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        extra = {"pruned_at": pruning.pruned_at} if pruned else {}
        return TrainResult(run_id, dict(logger.last), sizes, pruned, extra)
    except KeyboardInterrupt:
        status, state = "KILLED", "KILLED"
        raise
    except Exception as e:
        client.set_tag(run_id, "ablate.fail_reason", store.mask(f"{type(e).__name__}: {e}")[:5000])
        raise
    finally:
        logger.flush()
        client.set_tag(run_id, "ablate.state", state)
        runs.end_run(client, run_id, status)


