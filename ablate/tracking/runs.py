"""MLflow run lifecycle: parent per study, child per trial, params once, honest end status."""

from __future__ import annotations

from typing import Any

from ablate.tracking.store import mask

MAX_PARAMS_PER_BATCH = 100


def create_run(client, experiment_id: str, run_name: str, tags: dict[str, str],
               parent_run_id: str | None = None) -> str:
    tags = dict(tags)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id  # what the UI nests by
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    return run.info.run_id


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, mask(str(v))[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[i: i + MAX_PARAMS_PER_BATCH], synchronous=True)


def end_run(client, run_id: str, status: str) -> None:
    """status: FINISHED | FAILED | KILLED."""
    client.set_terminated(run_id, status=status)


def find_runs(client, filter_string: str, experiment_ids: list[str] | None = None) -> list:
    """Every active run matching `filter_string`, read page by page (MLflow caps a page at
    1000 runs), in `experiment_ids` or, when None, in every active experiment."""
    from mlflow.entities import ViewType

    if experiment_ids is None:
        experiment_ids = [e.experiment_id
                          for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    out, token = [], None
    while experiment_ids:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000,
                                  page_token=token, run_view_type=ViewType.ACTIVE_ONLY)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    return out


def number(metrics: dict[str, float], params: dict[str, str], key: str,
           default: float | None = None) -> float | None:
    """A run's number `key`: a metric's last value, else a numeric param (the sizes that
    describe a config, params_active, flops_per_token, ..., are logged as params)."""
    if key in metrics:
        return metrics[key]
    try:
        return float(params[key])
    except (KeyError, TypeError, ValueError):
        return default


NOTE = "mlflow.note.content"  # the run's description in the MLflow UI
NOTE_MARKER = "<!-- ablate:summary -->"  # a description ablate wrote (and may rewrite)


def describe(client, run_id: str, markdown: str) -> bool:
    """Set the run's description (what the MLflow UI shows on its page) to `markdown`, unless
    a person wrote one: ablate only replaces its own (marked) text. -> whether it was set."""
    note = client.get_run(run_id).data.tags.get(NOTE, "")
    if note and not note.startswith(NOTE_MARKER):
        return False
    client.set_tag(run_id, NOTE, f"{NOTE_MARKER}\n{markdown}")
    return True
