"""`--storage` / `--tracking-uri`, shared by every command that reads or writes a study.

Both fall back to an environment variable, so a URI with a password never has to be on a
command line (which every local user can read in /proc/<pid>/cmdline or `ps`): the sweep's
worker processes get them this way too.
"""

from __future__ import annotations

import argparse
import os

STORAGE_ENV = "ABLATE_STORAGE"
TRACKING_ENV = "ABLATE_TRACKING_URI"


def add_store_args(p: argparse.ArgumentParser, *, storage: str | None) -> None:
    """--tracking-uri, and --storage when `storage` (its help text) is given."""
    if storage is not None:
        p.add_argument("--storage", default=os.environ.get(STORAGE_ENV) or None,
                       help=f"{storage}; or set ${STORAGE_ENV}")
    p.add_argument("--tracking-uri", default=os.environ.get(TRACKING_ENV) or None,
                   help=f"MLflow tracking URI (default: sqlite in ABLATE_HOME); or set ${TRACKING_ENV}")


def store_env(storage: str | None, tracking_uri: str | None) -> dict[str, str]:
    """The environment that hands both URIs to a child `ablate` process."""
    return {TRACKING_ENV: tracking_uri or "", STORAGE_ENV: storage or ""}
