"""The study's MLflow parent run: one per study, reopened when the sweep is re-run, ended
with the study's summary (`summary.json`, `best/<objective>`) and an honest status."""

from __future__ import annotations

import contextlib

import yaml
from optuna.trial import TrialState

from ablate.sweep.record import PARENT_RUN_ID, TrialRecord, objective_text, parent_run_id
from ablate.tracking import runs, store
from ablate.tracking.tags import KIND, REVISION, STUDY, standard_tags


def open_parent(sweep, study, client, revision: int = 1) -> str:
    """The parent run's id: the stored one, reopened, or a new one."""
    exp_id = store.ensure_experiment(client, sweep.experiment)
    first = sweep.spec.objectives[0]  # what the study's runs table shows and sorts by first
    store.save_runs_view(client, exp_id, first.metric, first.direction, revision)
    parent = parent_run_id(study)
    if parent:
        from mlflow.exceptions import MlflowException

        try:
            if client.get_run(parent).info.lifecycle_stage == "active":
                client.update_run(parent, status="RUNNING")
                return parent
        except MlflowException as e:  # deleted from the store: make a new one; else it is
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":  # a real problem (a full disk...)
                raise
    spec = sweep.spec
    tags = standard_tags({STUDY: spec.study, KIND: "study"})
    parent = runs.create_run(client, exp_id, spec.study, tags)
    runs.log_params(client, parent, {
        "study": spec.study, "sampler": spec.sampler["name"], "pruner": spec.pruner["name"],
        "n_trials": sweep.n_trials, "repeats": spec.repeats,
        "objectives": ",".join(objective_text(o.metric, o.direction) for o in spec.objectives),
    })
    client.log_text(parent, store.mask(yaml.safe_dump(spec.source, sort_keys=False)), "sweep.yaml")
    study.set_user_attr(PARENT_RUN_ID, parent)
    return parent


@contextlib.contextmanager
def parent_open(sweep, study, client, parent: str, revision: int):
    """The parent run stays RUNNING while trials run; then the summary, then its end."""
    from ablate.tracking.full_disk import StoreFull

    status = "FINISHED"
    try:
        yield
    except (KeyboardInterrupt, StoreFull):
        status = "KILLED"
        raise
    finally:
        if status == "FINISHED" and _still_running_here(study):
            status = "FAILED"  # a trial of this process was never told (its store failed)
        try:
            summarise(sweep, study, client, parent, revision)
            client.set_terminated(parent, status=status)
        except Exception:  # noqa: BLE001 - a full store: doctor --fix closes it later
            if status == "FINISHED":
                raise


def _still_running_here(study) -> bool:
    """A trial this process trained is still RUNNING in the study."""
    import os

    try:
        return any(TrialRecord.of(t).pid == os.getpid()
                   for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    except Exception:  # noqa: BLE001 - an unreadable study: do not claim it finished
        return True


def summarise(sweep, study, client, parent: str, revision: int) -> None:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rec = TrialRecord.of(t)
        rows.append({"trial": t.number, "state": t.state.name, "params": t.params,
                     "values": t.values, "metrics": rec.metrics, "revision": rec.revision,
                     "run_ids": rec.run_ids, "fail_reason": rec.fail_reason})
    client.log_dict(parent, {"study": sweep.spec.study, "revision": revision, "trials": rows},
                    "summary.json")
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and TrialRecord.of(t).revision == revision]
    if done and not sweep.spec.multi_objective:
        best = min if sweep.spec.directions[0] == "minimize" else max
        client.log_metric(parent, f"best/{sweep.spec.objectives[0].metric}",
                          best(t.values[0] for t in done))
    client.log_metric(parent, "trials/complete", len(done))
    client.set_tag(parent, REVISION, str(revision))
