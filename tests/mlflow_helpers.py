"""Read what landed in a real MLflow store."""

from mlflow.tracking import MlflowClient


def store(home) -> MlflowClient:
    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def all_runs(home) -> list:
    if not (home / "mlflow.db").exists():
        return []
    c = store(home)
    exps = c.search_experiments()
    return c.search_runs([e.experiment_id for e in exps]) if exps else []
