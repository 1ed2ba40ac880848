"""Runs that pass for results although they are not (pure functions, as `diagnosis`): a
FINISHED run of a FAILED trial, a COMPLETE trial without its objective, one configuration
and seed trained twice."""

from __future__ import annotations

import math
from typing import Any

from ablate.sweep.doctor.problems import (
    DUPLICATE_RUN,
    FINISHED_RUN_FAILED_TRIAL,
    MISSING_OBJECTIVE,
    Problem,
)
from ablate.sweep.record import Revision, TrialRecord, parse_objective
from ablate.tracking.runs import number
from ablate.tracking.tags import REVISION, STATE, TRIAL

# params that name or place a run rather than define what it trains (the rest, seed
# included, is the configuration; as ablate.sweep.fingerprint's NOT_DEFINING)
RUN_IDENTITY = ("tracking.", "trainer.progress", "data.num_workers")


def finished_runs_of_failed_trials(trials, runs: dict[str, Any], known_runs) -> list[Problem]:
    """Runs FINISHED (a result, to MLflow's UI and to anyone comparing there) whose trial
    FAILED. A seed that finished before another seed of its trial failed is a result: the
    retry of the point that carries it (`repeats_done`) counts it, so it is not one."""
    carried = {done.get("run_id") for t in trials if t.state.name != "FAIL"
               for done in TrialRecord.of(t).repeats_done.values() if "metrics" in done}
    out = []
    for rid, r in runs.items():
        trial = known_runs.get(rid)
        if trial is None or trial.state.name != "FAIL" or r.info.status != "FINISHED" or rid in carried:
            continue
        reason = TrialRecord.of(trial).fail_reason or "no reason recorded"
        out.append(Problem(
            FINISHED_RUN_FAILED_TRIAL, f"run {rid} ({r.info.run_name}) FINISHED but trial "
            f"{trial.number} FAILED ({reason[:120]})", "close it FAILED with the trial's reason",
            trial=trial.number, run_id=rid))
    return out


def objective_metrics(revisions: list[Revision], trial, parent_run) -> list[str]:
    """The metrics a trial was optimising: its revision's definition on the study, else the
    parent run's `objectives` param (`metric:direction,...`); [] when neither says."""
    by_number = {r.number: r for r in revisions}
    rev = by_number.get(TrialRecord.of(trial).revision)
    named = rev.definition.get("objectives") if rev is not None else None
    if named is None and parent_run is not None:
        named = [o for o in parent_run.data.params.get("objectives", "").split(",") if o]
    return [parse_objective(o)[0] for o in named or []]


def missing_objectives(revisions: list[Revision], trials, runs: dict[str, Any], parent_run) -> list[Problem]:
    """COMPLETE trials whose value is missing or not finite, or whose FINISHED runs lack the
    objective metric: a number in the study that nothing in MLflow backs."""
    out = []
    for t in trials:
        if t.state.name != "COMPLETE":
            continue
        if not t.values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in t.values):
            out.append(Problem(MISSING_OBJECTIVE, f"trial {t.number} COMPLETE with objective "
                               f"value(s) {t.values}", "", trial=t.number))
        for metric in objective_metrics(revisions, t, parent_run):
            for rid in TrialRecord.of(t).run_ids:
                r = runs.get(rid)
                if r is None or r.info.status != "FINISHED":
                    continue  # a missing run is MISSING_RUN's
                value = number(r.data.metrics, r.data.params, metric)
                if value is None or not math.isfinite(value):
                    out.append(Problem(MISSING_OBJECTIVE, f"trial {t.number} COMPLETE but its run "
                                       f"{rid} has {metric} = {value} in MLflow", "",
                                       trial=t.number, run_id=rid))
    return out


def duplicate_runs(runs: dict[str, Any]) -> list[Problem]:
    """FINISHED trial runs of one configuration and seed (every param but RUN_IDENTITY's, in
    one revision of the study): whatever pools them counts one sample twice."""
    groups: dict[tuple, list] = {}
    for r in runs.values():
        tags = r.data.tags
        if (r.info.status != "FINISHED" or TRIAL not in tags or "trainer.seed" not in r.data.params
                or tags.get(STATE) == "PRUNED"):
            continue  # a run that trained something, and whose result counts
        config = tuple(sorted((k, v) for k, v in r.data.params.items() if not k.startswith(RUN_IDENTITY)))
        groups.setdefault((tags.get(REVISION, "1"), config), []).append(r)
    out = []
    for same in groups.values():
        if len(same) < 2:
            continue
        same.sort(key=lambda r: r.info.start_time or 0)
        ids = ", ".join(f"{r.info.run_id} (trial {r.data.tags['ablate.trial']})" for r in same)
        out.append(Problem(
            DUPLICATE_RUN, f"runs {ids} trained the same configuration with seed "
            f"{same[0].data.params.get('trainer.seed', '?')}: {len(same)} runs of one sample", "",
            trial=int(same[-1].data.tags[TRIAL]), run_id=same[-1].info.run_id))
    return out
