"""Where ablate writes: everything under ABLATE_HOME (default ./ablate-runs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ablate.errors import ConfigError


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


def check_home() -> None:
    """ABLATE_HOME names a directory ablate can create or write in; else one ConfigError
    naming it, before anything is written. An empty value would otherwise mean the
    working directory (Path("") is "."), a file or a read-only place a traceback later."""
    raw = os.environ.get("ABLATE_HOME")
    if raw is not None and not raw.strip():
        raise ConfigError("ABLATE_HOME", raw, "a directory path, or unset it for ./ablate-runs",
                          "empty")
    check_writable_dir(home(), "ABLATE_HOME", shown=raw)


def check_writable_dir(path: Path, key: str, shown: str | None = None) -> None:
    """`path` is a writable directory, or one can be made there: its nearest existing
    ancestor is a directory this process can create a directory in. os.access answers for
    permissions and read-only mounts; a probe directory, made and removed at once, answers
    where it cannot (root, sysfs). Nothing is left behind."""
    value = shown if shown is not None else str(path)
    p = path
    while not p.exists():
        if p.is_symlink():
            raise ConfigError(key, value, "a directory path", f"{p} is a broken symbolic link")
        p = p.parent
    if not p.is_dir():
        where = "it is a file" if p == path else f"{p} is a file"
        raise ConfigError(key, value, "a directory path", f"not a directory: {where}")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(key, value, "a directory this user can write in", f"{p} is read-only")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ablate-probe-", dir=p))
    except OSError as e:
        raise ConfigError(key, value, "a directory this user can write in",
                          f"cannot write in {p} ({e.strerror or type(e).__name__})") from None
