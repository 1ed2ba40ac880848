"""`--storage` / `--tracking-uri`, shared by every command that reads or writes a study.

Both fall back to an environment variable, so a URI with a password never has to be on a
command line (which every local user can read in /proc/<pid>/cmdline or `ps`): the sweep's
worker processes get them this way too.
"""

from __future__ import annotations

import argparse
import os

from ablate.errors import AblateError, ConfigError

from ablate.sweep.workers import STORAGE_ENV, TRACKING_ENV

_ENV_OF = {"storage": ("--storage", STORAGE_ENV), "tracking_uri": ("--tracking-uri", TRACKING_ENV)}


def add_store_args(p: argparse.ArgumentParser, *, storage: str | None) -> None:
    """--tracking-uri, and --storage when `storage` (what it is for, and its default) is
    given; the forms a storage URL may take come from `ablate.sweep.storages.STORAGES`."""
    from ablate.sweep.storages import storage_help

    if storage is not None:
        p.add_argument("--storage", help=f"{storage}. {storage_help()}; or set ${STORAGE_ENV}")
    p.add_argument("--tracking-uri",
                   help=f"MLflow tracking URI (default: sqlite in ABLATE_HOME); or set ${TRACKING_ENV}")


def apply_env(a: argparse.Namespace) -> None:
    """Fill the store flags not given from the environment; remember which came from there."""
    a.from_env = {}
    for attr, (flag, env) in _ENV_OF.items():
        if hasattr(a, attr) and getattr(a, attr) is None and os.environ.get(env):
            setattr(a, attr, os.environ[env])
            a.from_env[flag] = env


def name_the_source(e: AblateError, a: argparse.Namespace) -> AblateError:
    """An error about a store that came from the environment names the variable."""
    env = getattr(a, "from_env", {}).get(getattr(e, "key", None))
    if env is None:
        return e
    return ConfigError(f"{env} (as {e.key})", e.value, e.allowed, e.why)



