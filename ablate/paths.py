"""Where ablate writes: everything under ABLATE_HOME (default ./ablate-runs)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("ABLATE_HOME", "ablate-runs")).expanduser().resolve()


def default_tracking_uri() -> str:
    return f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> Path:
    return home() / "artifacts"


def cache_dir() -> Path:
    return home() / "cache"


def checkpoint_dir(*parts: str) -> Path:
    return home().joinpath("checkpoints", *parts)


def default_storage_path(study: str) -> Path:
    return home() / "optuna" / f"{study}.journal"
