"""Optuna storages: one table from a storage URL's scheme to how it is checked and opened.

Storage by deployment (Optuna's own decision graph in its distributed-optimization tutorial;
SQLite raises "database is locked" under parallel workers): a journal file for one
machine (default, safe for many processes), PostgreSQL for many machines (heartbeats +
retry of stale trials), SQLite for one process only. A new backend is one entry in
`STORAGES`: the error messages and the `--storage` help of every command read it.

```python
from ablate.sweep.storages import load_study, make_storage

storage = make_storage(None, "quickstart")         # the default journal, created if absent
study, storage = load_study("quickstart", None)    # an existing study, never creating one
```
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ablate import paths
from ablate.errors import ConfigError
from ablate.tracking.store import check_db_driver, mask


@dataclass(frozen=True)
class Backend:
    form: str  # what a user writes, as error messages list it
    about: str  # one line for the --storage help
    check: Callable[[str, int], None]  # (url, workers): openable from here; nothing contacted
    open: Callable[[str | None, str], object]  # (url, study) -> an Optuna storage


def journal_path(url: str | None, study: str) -> Path | None:
    """The journal file a storage URL names (None: the study's default one), or None when
    the URL is not a journal."""
    if url is None:
        return paths.default_storage_path(study)
    return Path(url.removeprefix("journal://")) if _is_journal(url) else None


def _is_journal(url: str) -> bool:
    return url.endswith(".journal") or url.startswith("journal://")


def _check_journal(url: str, workers: int) -> None:
    path = Path(url.removeprefix("journal://")).expanduser()
    if path.is_dir():
        raise ConfigError("--storage", url, STORAGE_ALLOWED, "a directory, not a journal file")
    paths.check_writable_dir(path.parent, "--storage", shown=url)


def _open_journal(url: str | None, study: str):
    from optuna.storages import JournalStorage

    from ablate.sweep.journal import open_backend

    path = journal_path(url, study)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(open_backend(path))  # torn records cut first (journal.py)


def _check_database(url: str, workers: int) -> None:
    sqlite = url.split(":", 1)[0].lower() == "sqlite"
    if sqlite and workers > 1:
        raise ConfigError("--storage", mask(url),
                          "a journal file or postgresql:// URL for --workers > 1",
                          "SQLite locks under parallel writers (Optuna FAQ)")
    if sqlite:  # sqlite:///relative or sqlite:////absolute: its folder must exist
        path = Path(url.split(":///", 1)[1]) if ":///" in url else None
        if path is None or not str(path) or not path.parent.is_dir():
            raise ConfigError("--storage", mask(url), "sqlite:///PATH in an existing folder",
                              "no such folder" if path is not None else "no file path")
    check_db_driver(_with_driver(url), "--storage", STORAGE_ALLOWED)


@functools.cache
def _rdb_storage():
    """Optuna's RDBStorage whose public calls run whole (`ablate.interrupts.shielded`): a stop
    that cut one in half could leave its pooled connection holding the database's write
    lock, and the stopped trial's own FAIL would then wait out the busy timeout and fail
    (SQLite: 1 stop in a few at random moments of user-attr writes)."""
    from optuna.storages import RDBStorage

    from ablate.interrupts import shield_public

    class ShieldedRDBStorage(RDBStorage):
        def __getattribute__(self, name: str):
            return shield_public(name, super().__getattribute__(name))

    return ShieldedRDBStorage


def _open_sqlite(url: str, study: str):
    return _rdb_storage()(url)


def _open_server(url: str, study: str):
    """PostgreSQL or MySQL: heartbeats, so a lost worker's trial is failed and retried."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    url = _with_driver(url)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental": not the user's concern
            warnings.simplefilter("ignore", ExperimentalWarning)
            return _rdb_storage()(
                url,
                heartbeat_interval=60,
                grace_period=180,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                engine_kwargs={"pool_pre_ping": True},
            )
    except Exception as e:  # noqa: BLE001 - unreachable server, bad credentials, ...
        raise ConfigError("--storage", mask(url), "a reachable database URL",
                          f"cannot connect ({type(e).__name__})") from None


# scheme (before any +driver) -> backend; "journal" also stands for PATH.journal and the default
STORAGES: dict[str, Backend] = {
    "journal": Backend("PATH.journal, journal://PATH", "one machine, many processes (the default)",
                       _check_journal, _open_journal),
    "sqlite": Backend("sqlite:///PATH (one worker)", "SQLite locks under parallel writers",
                      _check_database, _open_sqlite),
    "postgresql": Backend("postgresql[+driver]://...", "many machines; heartbeats retry a lost "
                          "worker's trials", _check_database, _open_server),
    "mysql": Backend("mysql[+driver]://...", "many machines, as postgresql", _check_database,
                     _open_server),
}
STORAGE_ALLOWED = ", ".join(b.form for b in STORAGES.values())


def storage_help() -> str:
    """The --storage forms, one clause each, for the commands' help."""
    return "; ".join(f"{b.form}: {b.about}" for b in STORAGES.values())


def scheme_of(url: str | None) -> str:
    """The key of `url` in STORAGES (not checked: an unknown scheme is returned as is)."""
    if url is None or _is_journal(url):
        return "journal"
    return url.split(":", 1)[0].lower().split("+", 1)[0]


def check_storage_url(url: str | None, workers: int = 1) -> None:
    """The Optuna storage `url` can be opened from here: a known scheme, its driver
    installed, a journal's folder writable, SQLite for one worker only. Nothing is
    created or contacted (the default journal lives in ABLATE_HOME: `paths.check_home`)."""
    if url is None:
        return
    backend = STORAGES.get(scheme_of(url))
    if backend is None:
        scheme = url.split(":", 1)[0].lower()
        raise ConfigError("--storage", mask(url), STORAGE_ALLOWED,
                          f"unsupported scheme {scheme}://")
    backend.check(url, workers)


def make_storage(url: str | None, study: str, workers: int = 1):
    """The Optuna storage `url` names (None: the study's default journal), created if absent."""
    check_storage_url(url, workers)
    return STORAGES[scheme_of(url)].open(url, study)


def load_study(name: str, storage: str | None = None):
    """-> (an existing study, its storage); ConfigError (one line) naming the known ones if
    it is absent. Never creates anything: a journal file must already exist."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = journal_path(storage, name)
    if path is not None and not path.is_file():
        folder = path.parent
        known = sorted(p.stem for p in folder.glob("*.journal")) if storage is None else []
        raise ConfigError("--study", name, ", ".join(known) or f"a study stored under {folder}",
                          "unknown study")
    st = make_storage(storage, name)
    names = optuna.get_all_study_names(st)
    if name not in names:
        raise ConfigError("--study", name,
                          ", ".join(sorted(names)) or "none stored there", "unknown study")
    return optuna.load_study(study_name=name, storage=st), st


def _with_driver(url: str) -> str:
    """`postgresql://` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is here."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url
