"""The MLflow store: explicit tracking URI always (PITFALLS #7), experiments, masking."""

from __future__ import annotations

import re
from pathlib import Path

from ablate import paths

_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@]+):(?P<pw>[^@/]+)@")


def mask(text: str) -> str:
    """Hide the password of any `scheme://user:password@host` inside `text`."""
    return _PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def resolve_tracking_uri(uri: str | None) -> str:
    return uri or paths.default_tracking_uri()


def client(uri: str | None):
    """An MlflowClient on `uri`; creates the SQLite file's folder (only now, not earlier)."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(mlflow_client, name: str) -> str:
    """Experiment id for `name`, created with artifacts under $ABLATE_HOME/artifacts for local
    stores (a server with proxied artifacts chooses its own location)."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not mlflow_client.tracking_uri.startswith(("http://", "https://")):
        location = (paths.artifact_root() / name).as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - another worker created it first
        exp = mlflow_client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
