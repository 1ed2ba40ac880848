"""What several commands share: the one-line usage error, `--plugin`, the store flags, the
config-file argument, offline mode and joining a torchrun process group.

`--storage` / `--tracking-uri` fall back to an environment variable, so a URI with a password
never has to be on a command line (which every local user can read in /proc/<pid>/cmdline or
`ps`): the sweep's worker processes get them this way too.
"""

from __future__ import annotations

import argparse
import atexit
import os

from ablate.errors import AblateError, ConfigError
from ablate.sweep.workers import STORAGE_ENV, TRACKING_ENV

_ENV_OF = {"storage": ("--storage", STORAGE_ENV), "tracking_uri": ("--tracking-uri", TRACKING_ENV)}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the contract of every ablate error)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def add_plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import a module that registers routers/losses first (repeatable)")


def add_store_args(p: argparse.ArgumentParser, *, storage: str | None) -> None:
    """--tracking-uri, and --storage when `storage` (what it is for, and its default) is
    given; the forms a storage URL may take come from `ablate.sweep.storages.STORAGES`."""
    from ablate.sweep.storages import storage_help

    if storage is not None:
        p.add_argument("--storage", help=f"{storage}. {storage_help()}; or set ${STORAGE_ENV}")
    p.add_argument("--tracking-uri",
                   help="MLflow tracking URI (default: sqlite in ABLATE_HOME); or set "
                        f"${TRACKING_ENV}")


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


def split_config(args: list[str]) -> tuple[str | None, list[str]]:
    """[CONFIG.yaml] [key=value ...] -> (the config file or None, the overrides)."""
    if args and "=" not in args[0] and args[0].endswith((".yaml", ".yml")):
        return args[0], args[1:]
    return None, args


def hub_mode(source: str) -> None:
    """Offline unless the config names a hub dataset; read by `datasets` at import time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "0" if source == "hub" else "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def join_process_group(accelerator: str) -> int | None:
    """Started by torchrun / srun as one of several ranks: join the group before any model is
    built (expert parallelism slices it) and leave it together at exit; -> this rank, or None
    when this is a single process."""
    from ablate.parallel import world

    if not world.launched_distributed():
        return None
    atexit.register(world.leave)
    return world.join(accelerator)


def add_study_read_args(p: argparse.ArgumentParser) -> None:
    """What `compare` and `dashboard` read: the grouping, the metric, the revision, the stores."""
    p.add_argument("--by", action="append", metavar="PARAM",
                   help="group runs into arms by this param (a search-space param or any logged "
                   "config key, e.g. model.moe.top_k); repeatable or comma-separated "
                   "(default: the `arm` param, else all search-space params)")
    p.add_argument("--metric", help="metric to compare (default: the study's first objective)")
    p.add_argument("--revision", default=None, help="which revision of the study (made by "
                   "`ablate sweep --extend`) to read: a number, `all` (each revision's arms "
                   "apart) or `pool` (pooled); default: the newest")
    add_store_args(p, storage="Optuna storage (default: $ABLATE_HOME/optuna/<study>.journal)")


def results_console(stderr: bool = False):
    """A rich Console for results: on a terminal, its width; off one (a log file, `| cat`,
    a SLURM job), wide enough that no table or link is cut or folded at 80 columns (a link
    split over two lines is a broken link when copied)."""
    from rich.console import Console

    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=400)
