"""One training run, start to finish: data -> model -> Trainer -> one MLflow run.

`build` makes what a run trains: the data, the model with its starting weights, sharded
(expert parallelism), compiled and frozen as the config says, its routers probed. `fit`
trains it as one MLflow run (and, with `trainer.budgets`, its cooldown branches: see
`schedule.py`) and ends that run honestly whichever way training ends. `train` is both;
`ablate.training.launch.run` prepares the starting weights and calls it, for `ablate train`,
every sweep trial and the DDP followers.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import signal
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from ablate import paths
from ablate.config.load import applicable, flatten, to_dict, to_yaml
from ablate.config.schema import RunConfig
from ablate.errors import ConfigError
from ablate.tracking.naming import arm_name
from ablate.tracking.tags import (
    ARM,
    DATA_FINGERPRINT,
    FAIL_REASON,
    FROZEN_ROUTER,
    INIT,
    NONCAUSAL_ROUTING,
    RESUME_SKIPPED,
    RESUMED_AT,
    RESUMED_FROM,
    standard_tags,
)
from ablate.tracking.tracker import RunTracker
from ablate.training.accounting import param_counts
from ablate.training.callbacks import (
    FlushMetrics,
    OptunaPruning,
    RunState,
    StepProgress,
    Throughput,
)
from ablate.training.profile import StartupClock
from ablate.training.routing_stats import RouterHealth, RoutingStats
from ablate.training.schedule import BranchSchedule, BudgetPlan, StableCheckpoints, plan_for
from ablate.training.weights import InitialWeights, freeze_tags, load_initial, save_weights


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, float]
    sizes: dict[str, int]
    pruned: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Built:
    """What `build` made: the resolved config, the data, the module, and what describes the
    run (its sizes, and tags for what is not the default: its init, frozen parts, ...)."""

    cfg: RunConfig
    dm: Any  # ablate.data.LMDataModule
    module: Any  # ablate.training.module.LMModule
    sizes: dict[str, int]
    tags: dict[str, str]
    expert_parallel: bool  # the experts are sharded: the ExpertParallel callback clips
    clock: StartupClock = field(default_factory=StartupClock)  # start-up phases, timed


def build_datamodule(cfg: RunConfig):
    from ablate.data import LMDataModule

    return LMDataModule(cfg.data, paths.cache_dir(), seed=cfg.trainer.seed)


def build(cfg: RunConfig, initial: InitialWeights | None = None, progress=None) -> Built:
    """The data and the model of `cfg` (a copy: the caller's config is left as it was).
    `initial`: the starting weights cfg.init asks for (`ablate.training.launch`)."""
    if initial is None and (cfg.init.from_checkpoint or cfg.init.dense_steps):
        raise ValueError("cfg.init names starting weights: pass initial=prepare_init(cfg, ...)")
    from ablate.parallel.expert_parallel import parallelize
    from ablate.training.module import LMModule

    clock = StartupClock()
    cfg = copy.deepcopy(cfg)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    if progress is not None and hasattr(progress, "message"):
        dm.report = progress.message  # "tokenizing ...": the first run of a corpus takes a while
    dm.prepare_data()
    dm.setup("fit")
    if cfg.model.vocab_size is None:
        cfg.model.vocab_size = dm.vocab_size
    elif cfg.model.vocab_size < dm.vocab_size:  # ids past the embedding: an IndexError later
        raise ConfigError("model.vocab_size", cfg.model.vocab_size, f"null (the tokenizer's) or "
                          f">= {dm.vocab_size}", "smaller than the tokenizer's vocabulary")
    clock.lap("data")
    module = LMModule(cfg.model, cfg.optim, cfg.trainer.max_steps, cfg.data.block_size)
    tags: dict[str, str] = {}
    if initial is not None:  # whole weights, before parallelize slices the experts
        load_initial(module.model, initial)
        tags.update(initial.tags)
    elif cfg.init.freeze != "none":
        tags[INIT] = "scratch"
    sharded = parallelize(module, cfg.model.moe.expert_parallel)  # before anything uses it
    if cfg.trainer.compile:
        compile_model(module)
    tags.update(freeze_tags(module.model, cfg.init.freeze))  # the parameters it trains
    clock.lap("model" + (" and torch.compile" if cfg.trainer.compile else ""))
    if cfg.model.ffn == "moe":  # before anything is logged: a router the LM loss cannot train
        from ablate.training.probe import check_routers_learn

        frozen = check_routers_learn(module.model, *dm.probe_batch(),
                                     allow_frozen=cfg.model.moe.allow_frozen_router)
        if frozen:  # allowed by model.moe.allow_frozen_router: say so on the run
            tags[FROZEN_ROUTER] = ",".join(f"l{g.layer}" for g in frozen)
        if cfg.model.moe.allow_noncausal_routing:
            tags[NONCAUSAL_ROUTING] = "true"  # such runs see future tokens
        clock.lap("router probe")
    sizes = param_counts(cfg.model, cfg.data.block_size)
    return Built(cfg, dm, module, sizes, tags, bool(sharded), clock)


def train(cfg: RunConfig, *, experiment: str, initial: InitialWeights | None = None,
          progress=None, **fit_kwargs) -> TrainResult:
    """`build` then `fit`: one MLflow run (rank 0 only under DDP)."""
    return fit(build(cfg, initial, progress), experiment=experiment, progress=progress,
               **fit_kwargs)


def fit(built: Built, *, experiment: str, tracking_uri: str | None = None,
        run_name: str | None = None, parent_run_id: str | None = None,
        tags: dict[str, str] | None = None, trial=None, progress=None, on_run=None,
        weights_out: str | None = None, ckpt_dir=None, prune_follower: bool = False,
        params: dict[str, str] | None = None) -> TrainResult:
    """Train `built` as one MLflow run. `trial`: the Optuna trial to report to and prune by;
    `prune_follower`: a DDP rank > 0 of a prunable trial (it receives rank 0's decision).
    `ckpt_dir`: where the run checkpoints and resumes from. `params`: more MLflow params (a
    sweep's `arm`: the point's label, also the run's `ablate.arm` tag; without it the tag is
    the config's seed-free name)."""
    cfg = built.cfg
    tracker = RunTracker(tracking_uri, experiment)
    params = dict(params or {})
    all_tags = standard_tags({DATA_FINGERPRINT: built.dm.fingerprint,
                              ARM: params.get("arm") or arm_name(cfg, seed=False),
                              **built.tags, **(tags or {})})
    # from the run's creation on, every way out ends it (a Ctrl-C while the Trainer is built
    # must not leave it RUNNING)
    status, state = "FAILED", "FAILED"
    plan = _budget_plan(built, ckpt_dir)
    try:
        # sizes describe the config: params, not metrics (MLflow's charts take either as an axis)
        run_id = tracker.start(run_name or cfg.tracking.run_name or arm_name(cfg), all_tags,
                               parent_run_id, {**applicable(flatten(to_dict(cfg)), cfg),
                                               **built.sizes, **params}, to_yaml(cfg))
        if on_run is not None and run_id:
            on_run(run_id)
        built.clock.lap("MLflow run")
        pruning = OptunaPruning(trial) if (trial is not None or prune_follower) else None
        trainer, routing = _fit_main(built, tracker, pruning, progress, ckpt_dir, plan)
        extra = _profile(built, trainer, tracker)
        pruned = bool(pruning and pruning.pruned)
        if weights_out:
            save_weights(built.module.model, weights_out)
        tracker.log_expert_load(*routing.load_matrix(), routing.load_history(), arm_name(cfg))
        if plan is not None and not pruned:
            _measure_budgets(built, plan, trainer, tracker, progress)
        status, state = "FINISHED", ("PRUNED" if pruned else "COMPLETE")
        if ckpt_dir is not None:  # finished: the resume point is no longer needed
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        if pruned:
            extra["pruned_at"] = pruning.pruned_at
        last = dict(tracker.logger.last) if tracker.logger is not None else dict_metrics(trainer)
        return TrainResult(tracker.run_id or "", last, built.sizes, pruned, extra)
    except KeyboardInterrupt:
        status, state = "KILLED", "KILLED"
        raise
    except Exception as e:
        tracker.set_tag(FAIL_REASON, f"{type(e).__name__}: {e}")
        raise
    finally:
        if plan is not None and ckpt_dir is None:  # `ablate train`: no retry will need them
            shutil.rmtree(plan.folder, ignore_errors=True)
        tracker.end(status, state)


def _fit_main(built: Built, tracker: RunTracker, pruning, progress, ckpt_dir,
              plan: BudgetPlan | None):
    """The run's own training, resumed from `ckpt_dir` when a checkpoint is there; it always
    ends on a validation. -> (the Trainer, its routing statistics)."""
    cfg, dm, module = built.cfg, built.dm, built.module
    routing = RoutingStats(cfg.tracking.routing_stats_every)
    callbacks, bar = _callbacks(built, routing, pruning, progress)
    resume_from = _resume_point(cfg, ckpt_dir, callbacks, tracker)
    if resume_from and progress is not None and hasattr(progress, "message"):
        progress.message(f"resumed from its checkpoint at step {_step_of(resume_from)}")
    if plan is not None:  # the branch points: the state each cooldown starts from
        callbacks.append(StableCheckpoints(plan))
        if ckpt_dir is None:
            callbacks.append(RunState())
    trainer = make_trainer(cfg, tracker.logger or False, callbacks, bar,
                           checkpointing=ckpt_dir is not None, clip=not built.expert_parallel,
                           profile=cfg.trainer.profile)
    if tracker.logger is not None:
        tracker.logger.step_source = lambda: trainer.global_step
    with _interrupts_propagate(trainer):
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=True)
        # always end on a val/loss (also a run resumed at its end: a retried trial whose
        # training had finished before its budgets were measured)
        last_validated = trainer.global_step % cfg.trainer.val_every == 0
        if not (pruning and pruning.pruned) and not (
                last_validated and "val/loss" in trainer.callback_metrics):
            trainer.validate(module, datamodule=dm, verbose=False)
    built.clock.lap("fit")
    return trainer, routing


def _profile(built: Built, trainer, tracker: RunTracker) -> dict[str, Any]:
    """With `trainer.profile`: where the run's time went, logged as profile.txt and .json."""
    if not built.cfg.trainer.profile:
        return {}
    from ablate.training import profile

    report = profile.breakdown(trainer.profiler.recorded_durations, built.clock)
    if built.cfg.trainer.budgets:  # measured after this report: not in its total
        report["note"] = "the run's own training; its budgets' cooldown branches are not in it"
    tracker.log_text(profile.render(report), "profile.txt")
    tracker.log_dict(report, "profile.json")
    return {"profile": report}


def _budget_plan(built: Built, ckpt_dir) -> BudgetPlan | None:
    """The budgets of a run with `trainer.budgets`: their branch points and results live with
    the run's checkpoints (a retried trial measures each budget once), else in a folder of
    their own for this run."""
    t = built.cfg.trainer
    tokens_per_step = (built.dm.tokens_per_batch * t.accumulate_grad_batches * t.devices
                       * t.num_nodes)
    folder = (Path(ckpt_dir) if ckpt_dir is not None
              else paths.checkpoint_dir("runs", uuid.uuid4().hex[:12])) / "budgets"
    return plan_for(built.cfg, tokens_per_step, folder)


def _measure_budgets(built: Built, plan: BudgetPlan, trainer, tracker: RunTracker,
                     progress) -> None:
    """The run's own end is its largest budget; every other budget is a cooldown branch
    from its branch point, measured once (the results survive a retry of the run)."""
    plan.record(plan.budgets[-1], _val(trainer))
    done = plan.results()
    for budget in plan.branches:
        if budget not in done:
            plan.record(budget, _branch(built, plan, budget, progress))
    results = plan.results()
    rows = [{"steps": b, "tokens": plan.tokens(b), "branch": b != plan.budgets[-1],
             **{k.replace("/", "_"): v for k, v in results[b].items()}} for b in plan.budgets]
    tracker.log_budgets(rows)


def _branch(built: Built, plan: BudgetPlan, budget: int, progress) -> dict[str, float]:
    """The cooldown of a run of `budget` steps, from its branch point: a resume of that run,
    with its own schedule and validations; its checkpoints (a branch that was killed resumes
    from its own) go to the branch's folder. -> its last val/loss, val/ppl and val/bpb."""
    cfg = copy.deepcopy(built.cfg)
    cfg.trainer.max_steps = budget
    folder = plan.branch_dir(budget)
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks: list[L.Callback] = [
        RunState(), BranchSchedule(),
        ModelCheckpoint(dirpath=folder, save_last=True, save_top_k=0,
                        every_n_train_steps=cfg.trainer.val_every)]
    if built.expert_parallel:
        from ablate.parallel.expert_parallel import ExpertParallel

        callbacks.append(ExpertParallel(cfg.optim.grad_clip))
    trainer = make_trainer(cfg, False, callbacks, progress_bar=False, checkpointing=True,
                           clip=not built.expert_parallel)
    resume = _resumable(folder / "last.ckpt") or str(plan.stable_checkpoint(budget))
    if progress is not None and hasattr(progress, "message"):
        progress.message(f"budget {budget} steps: cooldown from step {plan.branch_points[budget]}")
    module = built.module
    module.max_steps = budget  # the schedule of a run of `budget` steps
    try:
        with _interrupts_propagate(trainer), warnings.catch_warnings():
            # the branch point was saved with the run's own callbacks: not needed here
            warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint")
            # and the branch's checkpoints go to its own folder on purpose
            warnings.filterwarnings("ignore", message=".*The dirpath has changed from")
            trainer.fit(module, datamodule=built.dm, ckpt_path=resume, weights_only=True)
            if trainer.global_step % cfg.trainer.val_every:
                trainer.validate(module, datamodule=built.dm, verbose=False)
    finally:
        module.max_steps = built.cfg.trainer.max_steps
    return _val(trainer)


def _val(trainer) -> dict[str, float]:
    """The last validation's val/loss, val/ppl and val/bpb."""
    metrics = trainer.callback_metrics
    return {k: float(metrics[k]) for k in ("val/loss", "val/ppl", "val/bpb") if k in metrics}


def make_trainer(cfg: RunConfig, logger, callbacks, progress_bar: bool,
                 checkpointing: bool = False, clip: bool = True,
                 profile: bool = False) -> L.Trainer:
    """The Lightning Trainer of `cfg`. `clip`: False when a callback clips the gradients
    itself (expert parallelism's global norm). `profile`: time every hook (SimpleProfiler)."""
    t = cfg.trainer
    gpu = t.accelerator in ("gpu", "cuda")
    strategy = "auto"
    if t.devices * t.num_nodes > 1:
        from lightning.pytorch.strategies import DDPStrategy

        # the reference loop skips experts without tokens, and an allowed frozen router may
        # get no gradient: DDP must not wait for their gradients; grouped dispatch touches
        # every expert's weights
        moe = cfg.model.moe
        unused = cfg.model.ffn == "moe" and (moe.dispatch == "loop" or moe.allow_frozen_router)
        strategy = DDPStrategy(find_unused_parameters=unused)
    return L.Trainer(
        strategy=strategy,
        num_nodes=t.num_nodes,
        max_steps=t.max_steps,
        val_check_interval=t.val_every * t.accumulate_grad_batches,
        check_val_every_n_epoch=None,  # validate every n steps, across epoch boundaries
        limit_val_batches=t.val_batches,
        log_every_n_steps=t.log_every,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        gradient_clip_val=(cfg.optim.grad_clip or None) if clip else None,
        accumulate_grad_batches=t.accumulate_grad_batches,
        # MoE scatter ops have no deterministic CUDA kernel: warn there, not fail
        deterministic=("warn" if gpu else True) if t.deterministic else False,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=checkpointing,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        num_sanity_val_steps=0,
        profiler="simple" if profile else None,
        # the datamodule shards train batches by rank itself, in a resumable order
        use_distributed_sampler=False,
    )


def compile_model(module) -> None:
    """torch.compile, in place (parameter names unchanged, so checkpoints and MLflow params
    stay as they are), of every attention and norm, and of the FFN of dense blocks; an MoE
    layer's routing and dispatch (sorts, gathers, data-dependent sizes) stay eager."""
    from ablate.models.moe.layer import MoELayer

    for block in module.model.blocks:
        for part in (block.attn_norm, block.attn, block.ffn_norm):
            part.compile()
        if not isinstance(block.ffn, MoELayer):
            block.ffn.compile()


def _callbacks(built: Built, routing, pruning, progress) -> tuple[list[L.Callback], bool]:
    """The run's callbacks, and whether it shows Lightning's own progress bar."""
    cfg = built.cfg
    callbacks: list[L.Callback] = [Throughput(built.dm.tokens_per_batch, cfg.trainer.log_every)]
    if cfg.model.ffn == "moe":
        callbacks += [routing, RouterHealth(cfg.tracking.routing_stats_every)]
    if pruning:
        callbacks.append(pruning)
    if progress is not None:  # a sink: step(global_step, loss), validated(global_step, val_loss)
        callbacks.append(StepProgress(progress))
    bar = cfg.trainer.progress and progress is None
    if bar:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    if built.expert_parallel:  # last: RouterHealth reads the gradients before it clips them
        from ablate.parallel.expert_parallel import ExpertParallel

        callbacks.append(ExpertParallel(cfg.optim.grad_clip))
    return callbacks, bar


def _resume_point(cfg: RunConfig, ckpt_dir, callbacks: list, tracker: RunTracker) -> str | None:
    """With a per-trial checkpoint directory (a retried trial resumes where it died): add the
    checkpointing callbacks; the whole last checkpoint to resume from, if there is one."""
    if ckpt_dir is None:
        return None
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                     every_n_train_steps=cfg.trainer.val_every))
    callbacks.append(FlushMetrics())  # the curve reaches every checkpoint
    callbacks.append(RunState())  # a resume draws the random numbers it would have drawn
    last = Path(ckpt_dir) / "last.ckpt"
    resume_from = _resumable(last)
    if resume_from:
        tracker.set_tag(RESUMED_FROM, resume_from)
        tracker.set_tag(RESUMED_AT, str(_step_of(resume_from)))
    elif last.exists():  # cut short by a full disk or a crash mid-write: start over
        tracker.set_tag(RESUME_SKIPPED, f"unreadable checkpoint moved to {last}.broken")
    return resume_from


@contextlib.contextmanager
def _interrupts_propagate(trainer: L.Trainer):
    """Ctrl-C / SIGTERM inside fit or validate stay a KeyboardInterrupt.

    Lightning turns a KeyboardInterrupt into `sys.exit(1)` after its graceful shutdown and
    leaves SIGINT ignored; the callers (Optuna: trial FAIL, MLflow: run KILLED, the CLI: exit
    130) need the interrupt itself, and a second Ctrl-C must still work.
    """
    sigint = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit as e:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt("interrupted during training") from e
    finally:
        if sigint is not None and signal.getsignal(signal.SIGINT) is not sigint:
            signal.signal(signal.SIGINT, sigint)


def _step_of(checkpoint: str) -> int | str:
    """The optimizer step a checkpoint was saved at (its tensors memory-mapped, not read)."""
    import torch

    try:
        return int(torch.load(checkpoint, map_location="cpu", mmap=True,
                              weights_only=True)["global_step"])
    except Exception:  # noqa: BLE001 - a courtesy for the tag: the resume itself says more
        return "?"


def _resumable(last: Path) -> str | None:
    """The checkpoint to resume from, if it is whole. torch.save writes a zip archive whose
    directory is at the end, so a file cut short (ENOSPC while Lightning moved it into
    place, a crash) is no zip: it is moved aside rather than failing every retry."""
    import zipfile

    if not last.exists():
        return None
    if zipfile.is_zipfile(last):
        return str(last)
    last.replace(last.with_name(last.name + ".broken"))
    return None


def dict_metrics(trainer) -> dict[str, float]:
    """The trainer's last metrics (ranks without an MLflow logger)."""
    return {k: float(v) for k, v in trainer.callback_metrics.items()}
