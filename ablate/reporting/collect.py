"""A study read back from Optuna + MLflow as a tidy table: one row per (trial, repeat).

```python
from ablate.reporting.collect import load_study

data = load_study("quickstart")                  # default storage and tracking store
for row in data.complete():                      # COMPLETE trials, every repeat
    print(row.trial, row.repeat, row.seed, row.arm, row.metrics["val/loss"], row.run_id)
data.history(row.run_id, "val/loss")             # [(step, value), ...] from MLflow
data.artifact_json(row.run_id, "routing/expert_load.json")
```

Arm label of a row: the `--by` param(s) when given (a search-space param or any logged
config key, e.g. `model.moe.top_k`), else the trial's `arm` param, else all its params.
Runs tagged `ablate.role=dense_parent` (upcycling's shared dense parents) are skipped.
"""

from __future__ import annotations

from typing import Any

from ablate.errors import AblateError, ConfigError
from ablate.reporting.study_data import RunRow, StudyData
from ablate.sweep import record
from ablate.sweep.record import TrialRecord, parent_run_id
from ablate.sweep.spec import Objective
from ablate.sweep.storages import load_study as open_study
from ablate.tracking.naming import fmt_value, point_label, short_keys
from ablate.tracking.runs import find_runs
from ablate.tracking.store import mask, resolve_tracking_uri
from ablate.tracking.tags import DENSE_PARENT, REPEAT, ROLE

SKIP_ROLES = (DENSE_PARENT,)


def _objectives(parent_run, study) -> list[Objective]:
    directions = [d.name.lower() for d in study.directions]
    raw = parent_run.data.params.get("objectives", "") if parent_run is not None else ""
    objs = [Objective(*record.parse_objective(part)) for part in filter(None, raw.split(","))]
    if len(objs) != len(directions):
        objs = [Objective("val/loss" if i == 0 else f"objective{i}", d)
                for i, d in enumerate(directions)]
    return objs


def _label(params: dict[str, Any], config: dict[str, str], by: list[str] | None) -> str:
    if by:
        if by == ["arm"]:
            return fmt_value(params.get("arm", config.get("arm")))
        names = short_keys(by)
        return ", ".join(f"{names[k]}={fmt_value(params.get(k, config.get(k)))}" for k in by)
    return point_label(params)


def _seed(config: dict[str, str], default: int | None) -> int | None:
    try:
        return int(config["trainer.seed"])
    except (KeyError, ValueError):
        return default


def _revision_filter(study, revision: str | int | None):
    """-> (a predicate on trials, what the rows are: "revision N (newest)", ...): the newest
    revision (default), one revision, or all (`all` keeps them apart as arms of their own,
    `pool` pools them)."""
    revisions = [r.number for r in record.revisions(study)] or [1]
    if revision in (None, "latest"):
        wanted = revisions[-1]
    elif str(revision) in ("all", "pool"):
        how = "kept apart" if str(revision) == "all" else "pooled"
        return (lambda t: True), f"revisions {', '.join(map(str, revisions))} ({how})"
    else:
        try:
            wanted = int(revision)
        except ValueError:
            wanted = None
        if wanted not in revisions:
            raise ConfigError("--revision", revision,
                              ", ".join(map(str, revisions)) + ", all, pool", "unknown revision")
    newest = " (newest)" if wanted == revisions[-1] else ""
    return (lambda t: TrialRecord.of(t).revision == wanted), f"revision {wanted}{newest}"


def load_study(name: str, storage: str | None = None, tracking_uri: str | None = None,
               by: list[str] | None = None, revision: str | int | None = None) -> StudyData:
    """Read study `name` (Optuna storage + its MLflow parent's child runs) into rows: the
    trials of its newest revision unless `revision` names one (or `all`)."""
    from ablate.tracking.store import client as make_client

    study, _ = open_study(name, storage)  # never creates one
    keep, which = _revision_filter(study, revision)
    uri = resolve_tracking_uri(tracking_uri)
    client = make_client(uri)
    parent_id = parent_run_id(study)
    parent, children, experiment_id = None, {}, None
    if parent_id:
        try:
            parent = client.get_run(parent_id)
        except Exception:  # noqa: BLE001 - another store, or deleted
            raise AblateError(f"--tracking-uri={mask(uri)}: study {name!r} logged to parent run "
                              f"{parent_id}, which this MLflow store does not have") from None
        experiment_id = parent.info.experiment_id
        children = {r.info.run_id: r for r in find_runs(
            client, f"tags.mlflow.parentRunId = '{parent_id}'", [experiment_id])}

    rows: list[RunRow] = []
    tuning: list[RunRow] = []  # a `tune:` stage's trials: never a result of the study
    for t in study.get_trials(deepcopy=False):
        rec = TrialRecord.of(t)
        if not keep(t) or not rec.is_point:  # another revision; bookkeeping
            continue
        into = tuning if rec.stage is not None else rows
        ids, per = rec.run_ids, rec.metrics_per_repeat
        common = {"trial": t.number, "state": t.state.name, "params": dict(t.params),
                  "fail_reason": rec.fail_reason, "revision": rec.revision}
        if not ids:
            into.append(RunRow(repeat=0, arm="", config={}, metrics=dict(rec.metrics),
                               run_name=rec.run_name, **common))
            continue
        for r, rid in enumerate(ids):
            run = children.get(rid)
            if run is None and parent is not None:
                try:
                    run = client.get_run(rid)
                except Exception:  # noqa: BLE001 - deleted: fall back to Optuna's numbers
                    run = None
            if run is not None and run.data.tags.get(ROLE) in SKIP_ROLES:
                continue
            if run is not None:
                config, metrics = dict(run.data.params), dict(run.data.metrics)
                repeat = int(run.data.tags.get(REPEAT, r))
                run_name = run.info.run_name
            else:
                config, repeat, run_name = {}, r, rec.run_name
                metrics = (dict(per[r]) if r < len(per)
                           else dict(rec.metrics) if len(ids) == 1 else {})
            into.append(RunRow(repeat=repeat, arm="", config=config, metrics=metrics,
                               seed=_seed(config, None), run_id=rid, run_name=run_name, **common))

    if by:
        known_params = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
        known = set(known_params) | {k for r in rows for k in r.config}
        for k in by:
            if k not in known:
                raise ConfigError("--by", k, ", ".join(known_params) + " or a logged config key "
                                  "such as model.moe.top_k", "not a param of this study")
    tuned = _tuned_keys(study)
    apart = str(revision) == "all" and len({r.revision for r in rows + tuning}) > 1
    for row in rows + tuning:  # a point's arm, whatever value its tuned keys took
        row.arm = _label({k: v for k, v in row.params.items() if k not in tuned}, row.config, by)
        if apart:  # one arm per revision: runs of two definitions are never one mean
            row.arm += f" (rev {row.revision})"
    data = StudyData(name, study, client, parent_id, experiment_id,
                     _objectives(parent, study), rows, by)
    data.tuning, data.tuned, data.revision = tuning, tuned, which
    return data


def _tuned_keys(study) -> tuple[str, ...]:
    """The keys the study's newest revision tunes per arm (`tune:`), in its order."""
    revs = record.revisions(study)
    tune = revs[-1].definition.get("tune") if revs else None
    return tuple((tune or {}).get("space") or ())


def parse_by(values: list[str] | None) -> list[str] | None:
    """`--by a --by b` or `--by a,b` -> ["a", "b"]."""
    if not values:
        return None
    out = [p.strip() for v in values for p in v.split(",") if p.strip()]
    return out or None
