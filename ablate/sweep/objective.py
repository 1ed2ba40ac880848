"""One trial of a sweep: train its point once per seed, and say how it ended.

A point (one configuration) is trained with `repeats` seeds (seed, seed+1, ...): the same
seeds in every arm, so arms compare paired. Every (configuration, seed) is trained once in
a study: a finished seed is recorded on the trial as it ends (`repeats_done`), and a retry
of the trial (a queued copy, see `loop.py`) inherits that record and trains only the
seeds still missing. A seed that diverges is a result (it is not trained again); the other
seeds still train, and the point then fails for good with the divergence as its reason.

How a trial ends (`Outcome`):
  COMPLETE  every seed finished: the objective is the mean over seeds;
  PRUNED    the pruner stopped it (on the first seed's curve);
  FAIL      deterministic (a config error, a divergence): the point has failed for good;
            transient (anything else: a full disk, a lost connection): `retry`, the loop
            queues the point again, up to MAX_ATTEMPTS attempts in all.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from ablate import paths
from ablate.errors import AblateError
from ablate.parallel import world
from ablate.sweep.record import TrialRecord, write
from ablate.tracking import runs, store
from ablate.tracking.full_disk import StoreFull, is_full
from ablate.tracking.tags import (
    FAIL_REASON,
    POINT,
    REPEAT,
    REVISION,
    STATE,
    STUDY,
    standard_tags,
)

SUMMARY_METRICS = ("val/loss", "val/ppl", "val/bpb", "train/loss", "train/lm_loss",
                   "perf/tokens_per_s", "perf/step_ms", "params_active", "params_total",
                   "flops_per_token", "kv_cache_bytes_per_token")


@dataclass
class Outcome:
    state: str  # COMPLETE | PRUNED | FAIL
    values: list[float] | None = None
    reason: str = ""
    retry: bool = False  # a transient failure: train the point again
    environmental: bool = False  # the machine's failure, not the point's: spends no attempt
    metrics: dict[str, float] = field(default_factory=dict)


def deterministic(e: BaseException) -> bool:
    """The same config and seed would fail the same way: retrying wastes the compute."""
    from ablate.training.module import DivergenceError

    return isinstance(e, (AblateError, DivergenceError))


def environmental(e: BaseException) -> bool:
    """The machine failed, not the point: a full or read-only disk, a lost connection."""
    import errno

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if is_full(e) or isinstance(e, ConnectionError):
            return True
        if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EIO, errno.EACCES):
            return True
        if "readonly database" in str(e) or "read-only file system" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


def reason_of(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


def run_trial(sweep, trial, values: dict, cfg, parent: str, trial_tags: dict[str, str],
              progress=None) -> Outcome:
    """Train `values` (resolved: `cfg`) for every seed not yet done; never raises except
    KeyboardInterrupt."""
    from ablate.training import launch

    if progress is None:
        cfg.trainer.progress = False  # worker processes log lines, not live bars
    rec = TrialRecord.of(trial)
    name = rec.run_name or f"t{trial.number:03d}-{values.get('arm', 'trial')}"
    first = rec.retry_of if rec.retry_of is not None else trial.number
    done: dict[str, dict] = dict(rec.repeats_done)
    if done:  # the seeds an earlier attempt finished are this trial's runs too
        write(trial, run_ids=[d["run_id"] for d in done.values() if d.get("run_id")])
    prune = None if sweep.spec.multi_objective or sweep.spec.pruner["name"] == "none" else trial
    seeds = sweep.seeds(cfg, rec.stage)
    repeats = len(seeds)
    for r, seed in enumerate(seeds):
        if str(seed) in done:
            continue
        found = _finished_run(sweep, trial_tags, seed)
        if found is not None:  # trained already, its record lost (a store failed at the end)
            done[str(seed)] = found
            write(trial, repeats_done=done,
                  run_ids=[d["run_id"] for d in done.values() if d.get("run_id")])
            continue
        cfg_r = copy.deepcopy(cfg)
        cfg_r.trainer.seed = seed
        ckpt = paths.checkpoint_dir(sweep.spec.study, f"trial-{first:05d}", f"seed-{seed}")
        run_ids: list[str] = []

        def on_run(run_id: str, run_ids=run_ids) -> None:  # recorded at once: the reaper reads it
            run_ids.append(run_id)
            write(trial, run_ids=[d["run_id"] for d in done.values() if d.get("run_id")] + run_ids)
        if progress is not None:
            progress.start(trial.number, values, cfg.trainer.max_steps, r, repeats)
        if world.active():  # DDP peers train the same run
            world.share({"values": values, "seed": seed, "ckpt": str(ckpt), "stage": rec.stage,
                         "prune": prune is not None and r == 0})
        try:
            result = launch.run(cfg_r, experiment=sweep.experiment,
                                tracking_uri=sweep.tracking_uri, parent_run_id=parent,
                                run_name=name if repeats == 1 else f"{name}-r{r}",
                                tags={**trial_tags, REPEAT: str(r)},
                                trial=prune if r == 0 else None,  # prune on the first seed's curve
                                progress=progress, on_run=on_run, ckpt_dir=ckpt,
                                # MLflow groups repeats by it; a tuning trial's runs apart
                                params={"arm": _arm_label(sweep, values, rec.stage)})
        except Exception as e:  # noqa: BLE001 - every failure is recorded, none aborts the sweep
            if is_full(e):  # not the trial's fault: stop the sweep, resume the trial later
                raise StoreFull(reason_of(e)) from e
            reason = reason_of(e)
            if not run_ids:  # failed before its run existed: leave a FAILED run with the reason
                run_ids.append(_failed_run(sweep, parent, name, trial_tags, r, reason))
            if not deterministic(e):
                return Outcome("FAIL", reason=reason, retry=True, environmental=environmental(e))
            from ablate.training.module import DivergenceError

            if not isinstance(e, DivergenceError):  # a config error fails every seed alike
                return Outcome("FAIL", reason=reason)
            done[str(seed)] = {"run_id": run_ids[0], "diverged": reason}
        else:
            done[str(seed)] = {"run_id": result.run_id, "metrics": _summary(result, sweep.spec)}
            if result.pruned:
                write(trial, repeats_done=done)
                return Outcome("PRUNED", reason=f"pruned at step {result.extra.get('pruned_at')}")
        finally:
            if progress is not None:
                progress.stop()
        write(trial, repeats_done=done)
    return _conclude(sweep, trial, done, seeds)


def _arm_label(sweep, values: dict, stage: str | None) -> str:
    """The `arm` param of a trial's runs: the point's label; a tuning trial's adds its
    stage and tuned values, so MLflow never groups it with the arm's results."""
    from ablate.sweep.tune import label
    from ablate.tracking.naming import point_label

    if stage is None:
        return point_label({k: v for k, v in values.items() if k not in sweep.tuned})
    tuned = {k: values[k] for k in sweep.tuned}
    rest = {k: v for k, v in values.items() if k not in sweep.tuned}
    return f"{point_label(rest)} [{stage} {label(tuned)}]"


def _finished_run(sweep, trial_tags: dict[str, str], seed: int) -> dict | None:
    """A FINISHED, COMPLETE run of this point and seed that an earlier attempt trained but
    could not record (its tell or its repeats_done write failed): adopted, never retrained."""
    from ablate.tracking.runs import find_runs

    client = store.client(sweep.tracking_uri)
    exp = client.get_experiment_by_name(sweep.experiment)
    if exp is None or POINT not in trial_tags:
        return None
    runs = find_runs(client, f"tags.`{STUDY}` = '{trial_tags[STUDY]}' AND tags.`{POINT}` = "
                     f"'{trial_tags[POINT]}' AND tags.`{REVISION}` = '{trial_tags[REVISION]}' "
                     f"AND params.`trainer.seed` = '{seed}' AND attributes.status = 'FINISHED' "
                     f"AND tags.`{STATE}` = 'COMPLETE'", [exp.experiment_id])
    if not runs:
        return None
    run = runs[0]
    keep = set(SUMMARY_METRICS) | {o.metric for o in sweep.spec.objectives}
    merged = {**{k: float(v) for k, v in run.data.params.items()
                 if k in keep and _is_number(v)}, **run.data.metrics}
    return {"run_id": run.info.run_id, "metrics": {k: merged[k] for k in sorted(merged)
                                                   if k in keep}}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _summary(result, spec) -> dict[str, float]:
    """The metrics a trial keeps in Optuna: the summary ones and the objectives."""
    merged = {**{k: float(v) for k, v in result.sizes.items()}, **result.metrics}
    keep = set(SUMMARY_METRICS) | {o.metric for o in spec.objectives}
    return {k: merged[k] for k in sorted(merged) if k in keep}


def _conclude(sweep, trial, done: dict[str, dict], seeds: list[int]) -> Outcome:
    seeds = [str(s) for s in seeds]
    diverged = [f"seed {s}: {done[s]['diverged']}" for s in seeds if "diverged" in done[s]]
    if diverged:
        return Outcome("FAIL", reason="diverged (" + "; ".join(diverged) + ")"[:500])
    per_seed = [done[s]["metrics"] for s in seeds]
    metrics = {k: sum(m[k] for m in per_seed) / len(per_seed)
               for k in per_seed[0] if all(k in m for m in per_seed)}
    write(trial, metrics={k: v for k, v in metrics.items() if k in SUMMARY_METRICS})
    if len(seeds) > 1:
        write(trial, metrics_per_repeat=per_seed)
    out = []
    for obj in sweep.spec.objectives:
        v = metrics.get(obj.metric)
        if v is None or not math.isfinite(v):
            return Outcome("FAIL",
                           reason=f"objective {obj.metric} is {v}: not logged or not finite")
        out.append(v)
    return Outcome("COMPLETE", values=out, metrics=metrics)


def _failed_run(sweep, parent: str, name: str, trial_tags: dict[str, str], repeat: int,
                reason: str) -> str:
    """A FAILED child run for a trial that failed before training logged one, so the
    reason is in MLflow too."""
    client = store.client(sweep.tracking_uri)
    exp = store.ensure_experiment(client, sweep.experiment)
    tags = standard_tags({**trial_tags, REPEAT: str(repeat), STATE: "FAILED",
                          FAIL_REASON: store.mask(reason)})
    run_id = runs.create_run(client, exp, name, tags, parent)
    runs.end_run(client, run_id, "FAILED")
    return run_id
