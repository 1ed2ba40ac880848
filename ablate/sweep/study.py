"""Optuna storage, sampler and pruner from the sweep spec and CLI flags.

Storage by deployment (Optuna's own decision graph, PITFALLS #1-3): a journal file for one
machine (default, safe for many processes), PostgreSQL for many machines (heartbeats +
retry of stale trials), SQLite for one process only.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

from ablate import paths
from ablate.errors import ConfigError
from ablate.tracking.store import mask


def make_storage(url: str | None, study: str, workers: int = 1):
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

    if url is None or url.endswith(".journal") or url.startswith("journal://"):
        path = Path(url.removeprefix("journal://")) if url else paths.default_storage_path(study)
        path.parent.mkdir(parents=True, exist_ok=True)
        from ablate.sweep.journal import open_backend

        return JournalStorage(open_backend(path))  # torn records cut first (PITFALLS #27)
    if url.startswith("sqlite"):
        if workers > 1:
            raise ConfigError("--storage", mask(url), "a journal file or postgresql:// URL for --workers > 1",
                              "SQLite locks under parallel writers (Optuna FAQ)")
        return RDBStorage(url)
    if url.startswith(("postgresql", "mysql")):
        url = _with_driver(url)
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental": not the user's concern
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    url,
                    heartbeat_interval=60,
                    grace_period=180,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                    engine_kwargs={"pool_pre_ping": True},
                )
        except Exception as e:  # noqa: BLE001 - unreachable server, bad credentials, ...
            raise ConfigError("--storage", mask(url), "a reachable database URL",
                              f"cannot connect ({type(e).__name__})") from None
    raise ConfigError("--storage", mask(url), "PATH.journal, sqlite:///PATH, postgresql://...")


def _quiet_experimental(make):
    """Optuna flags several samplers and pruners "experimental": not the user's concern, and
    this runs before the sweep's terminal is set up (`ablate.console.quiet_libraries`)."""
    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        from optuna.exceptions import ExperimentalWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return make(*args, **kwargs)
    return wrapper


@_quiet_experimental
def make_sampler(spec: dict[str, Any], n_objectives: int, worker: int = 0):
    import optuna.samplers as s

    name, opts = spec["name"], dict(spec["options"])
    seed = None if spec.get("seed") is None else int(spec["seed"]) + worker  # per-worker seed
    if name == "tpe":
        opts.setdefault("constant_liar", True)  # parallel workers do not propose the same point
        return s.TPESampler(seed=seed, **opts)
    if name == "random":
        return s.RandomSampler(seed=seed, **opts)
    if name == "gp":
        return s.GPSampler(seed=seed, **opts)
    if name == "cmaes":
        return s.CmaEsSampler(seed=seed, **opts)
    if name == "nsga2":
        return s.NSGAIISampler(seed=seed, **opts)
    if name in ("bruteforce", "grid"):  # BruteForce: exhaustive, safe across workers
        return s.BruteForceSampler(seed=seed, **opts)
    raise ConfigError("sampler.name", name, "tpe, random, gp, cmaes, nsga2, bruteforce, grid")


@_quiet_experimental
def make_pruner(spec: dict[str, Any]):
    import optuna.pruners as p

    name, opts = spec["name"], dict(spec["options"])
    if name == "none":
        return p.NopPruner()
    if name == "median":
        return p.MedianPruner(**opts)
    if name == "hyperband":
        return p.HyperbandPruner(**opts)
    if name == "successive_halving":
        return p.SuccessiveHalvingPruner(**opts)
    if name == "wilcoxon":
        return p.WilcoxonPruner(**opts)
    if name == "threshold":  # e.g. {upper: 8.0}: stop runaway trials early
        return p.ThresholdPruner(**opts)
    if name == "patient":
        patience = opts.pop("patience", 2)
        return p.PatientPruner(p.MedianPruner(**opts), patience=patience)
    raise ConfigError("pruner.name", name, "none, median, hyperband, successive_halving, wilcoxon, "
                      "patient, threshold")


def _with_driver(url: str) -> str:
    """`postgresql://` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is here."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url
