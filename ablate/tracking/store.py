"""The MLflow store: explicit tracking URI always (a logger left to its default reads the
environment at import, and falls back to a file store MLflow 3.13+ refuses), experiments,
masking."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from ablate import paths
from ablate.errors import AblateError
from ablate.tracking.tags import REVISION, TRIAL

_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@]+):(?P<pw>[^@/]+)@")


def mask(text: str) -> str:
    """Hide the password of any `scheme://user:password@host` inside `text`."""
    return _PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def resolve_tracking_uri(uri: str | None) -> str:
    return uri or paths.default_tracking_uri()


_OPENED: set[tuple] = set()  # SQLite stores (path, size, mtime) this process checked


def client(uri: str | None):
    """An MlflowClient on `uri`; creates the SQLite file's folder (only now, not earlier).

    A SQLite store is created (or migrated) under a file lock beside it: MLflow creates its
    tables with migrations that race (two sweeps started together on a new ABLATE_HOME die
    in alembic, `Online migration expected to match one row`). An unreadable file (a torn
    copy, a disk error) stops here in one line naming it (`StoreUnreadable`). On a database
    this process connects to itself, every call is `shielded` from a stop."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    if not uri.startswith("sqlite:///"):
        return _shield(MlflowClient(tracking_uri=uri))
    path = Path(uri[len("sqlite:///"):])
    if _stamp(path) in _OPENED:
        return _shield(MlflowClient(tracking_uri=uri))
    path.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(path) + ".lock"):
        check_file(path)
        c = MlflowClient(tracking_uri=uri)
        c.search_experiments(max_results=1)  # MLflow creates or migrates its tables here
    _OPENED.add(_stamp(path))
    return _shield(c)


class ShieldedClient:
    """An MlflowClient whose public calls run whole (`ablate.interrupts.shielded`): a stop
    that cut one in half could leave its database connection in the pool with the write
    lock held, and the run could then never be closed. Only for databases: a request to a
    server is cut safely (the server's transaction is its own), and a dead server must not
    hold a stop for MLflow's minutes of retries."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name: str):
        from ablate.interrupts import shield_public

        return shield_public(name, getattr(self._inner, name))


def _shield(mlflow_client):
    from mlflow.store.db.db_types import DATABASE_ENGINES

    scheme = mlflow_client.tracking_uri.split(":", 1)[0].split("+", 1)[0]
    return ShieldedClient(mlflow_client) if scheme in DATABASE_ENGINES else mlflow_client


def _stamp(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (str(path), None, None)
    return (str(path), st.st_size, st.st_mtime_ns)


class StoreUnreadable(AblateError):
    """The MLflow store's file cannot be read as a store (the CLI: one line, exit 2)."""


def check_file(path: Path) -> None:
    """An existing SQLite store file is a whole database (SQLite's own quick check, read
    only); a missing one is fine (MLflow makes it)."""
    import sqlite3

    if not path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        result = f"{type(e).__name__}: {e}"
    if result != "ok":
        raise StoreUnreadable(
            f"the MLflow store {path} is unreadable ({str(result).splitlines()[0][:120]}); "
            "nothing was written. Restore it from a backup, or move it aside and start a new "
            "store there (the studies' journals under optuna/ are untouched)")


def check_store(uri: str | None) -> None:
    """Before anything is written: an existing SQLite store is readable."""
    uri = resolve_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        check_file(Path(uri[len("sqlite:///"):]))


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
        return mlflow_client.create_experiment(name, artifact_location=location,
                                               tags={KIND_TAG: KIND})
    except Exception:  # noqa: BLE001 - another worker created it first
        exp = mlflow_client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


TRACKING_ALLOWED = ("http(s)://HOST[:PORT], sqlite:///PATH, postgresql[+driver]://..., "
                    "mysql[+driver]://..., mssql[+driver]://...")
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def check_tracking_uri(uri: str | None, key: str = "--tracking-uri") -> None:
    """A tracking URI MLflow can open from here: a known scheme, a host for http(s), the
    database driver installed. Nothing is contacted or created (see `check_reachable`)."""
    import urllib.parse

    from ablate.errors import ConfigError

    if not uri:
        return
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    base = scheme.split("+", 1)[0]
    if base in ("http", "https"):
        if not urllib.parse.urlsplit(uri).hostname:
            raise ConfigError(key, mask(uri), TRACKING_ALLOWED, "no host in the URL")
        return
    if base in _DB_SCHEMES:
        check_db_driver(uri, key, TRACKING_ALLOWED)
        return
    if base in ("", "file"):
        import os

        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1"):
            return
        raise ConfigError(key, mask(uri), TRACKING_ALLOWED,
                          "MLflow refuses the file store (set MLFLOW_ALLOW_FILE_STORE=true "
                          "to force it)")
    raise ConfigError(key, mask(uri), TRACKING_ALLOWED, f"unsupported scheme {scheme}://")


def check_db_driver(url: str, key: str, allowed: str) -> None:
    """The SQLAlchemy dialect and its DBAPI driver of `url` are installed (imported, not
    connected): `mysql://` without MySQLdb, `postgresql+nodriver://` fail here in one line
    instead of deep inside MLflow or Optuna."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from ablate.errors import ConfigError

    try:
        dialect = make_url(url).get_dialect()
    except NoSuchModuleError:
        raise ConfigError(key, mask(url), allowed,
                          f"unknown database driver {url.split('://', 1)[0]}") from None
    except (ArgumentError, ValueError) as e:
        raise ConfigError(key, mask(url), allowed,
                          f"not a database URL ({type(e).__name__})") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        name = getattr(e, "name", None) or str(e)
        dialect_name = url.split("://", 1)[0].split("+", 1)[0]
        raise ConfigError(key, mask(url), allowed,
                          f"its driver is not installed (no module {name}): "
                          f"install it, or name one that is: {dialect_name}+DRIVER://") from None


def server_error(uri: str | None, timeout: float = 5.0) -> str | None:
    """Why an http(s) tracking server does not answer (one probe of its /health, no retry);
    None when it answers or `uri` is not a server. MLflow's own client retries a dead
    server for about four minutes per call before it gives up."""
    import urllib.parse
    import urllib.request

    if not uri or not uri.startswith(("http://", "https://")):
        return None
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host  # no credentials in the probe
    probe = urllib.parse.urlunsplit((parts.scheme, netloc,
                                     parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(probe, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered (auth or an old server without /health): reachable
    except (OSError, ValueError) as e:
        return f"cannot connect ({type(e).__name__})"


def check_reachable(uri: str | None, timeout: float = 5.0, key: str = "--tracking-uri") -> None:
    """Fail fast, in one line, when the tracking URI cannot work (`check_tracking_uri`) or an
    http(s) tracking server does not answer, instead of MLflow's minutes of retries and a
    traceback."""
    from ablate.errors import ConfigError

    check_tracking_uri(uri, key)
    if not uri or not uri.startswith(("http://", "https://")):
        check_store(uri)
        return
    error = server_error(uri, timeout)
    if error:
        raise ConfigError(key, mask(uri), "a reachable MLflow tracking server", error)


UI = "http://127.0.0.1:5000"  # where `ablate ui` serves by default
VIEW = "ablate"  # the saved runs view of every study's experiment: ?viewStateShareKey=ablate
# MLflow 3's model-training view
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def runs_view(metric: str, direction: str, *, by: str = "arm", revision: int | None = None) -> dict:
    """The runs table as a study wants it first (MLflow 3 reads this from the experiment tag
    `mlflow.sharedViewState.<key>`): the results only (the search box's filter: FINISHED
    trial runs of the study's newest `revision`, so a killed or failed run, a parent run or
    an older revision never enters an arm's average), grouped by arm with their repeats
    averaged, sorted by the objective, the objective and the arm's sizes first."""
    def col(kind: str, key: str) -> str:
        return f"{kind}.`{key}`"

    from ablate.tracking.metrics import SIZES

    objective = col("params" if metric in SIZES else "metrics", metric)
    # the objective is the only metric column: MLflow sorts a section's columns by name, so
    # any other metric could come first
    columns = [objective, col("params", by), col("params", "trainer.seed"),
               col("params", "params_active"), col("params", "params_total")]
    return {
        "searchFilter": f"tags.`{TRIAL}` LIKE '%' AND attributes.status = 'FINISHED'"
                        + (f" AND tags.`{REVISION}` = '{revision}'" if revision else ""),
        "orderByKey": objective,
        "orderByAsc": direction == "minimize",
        "selectedColumns": list(dict.fromkeys(columns)),
        "groupBy": {"aggregateFunction": "average",
                    "groupByKeys": [{"mode": "param", "groupByData": by}]},
        "groupsExpanded": {},
        "runsHiddenMode": "SHOW_ALL",
        "useGroupedValuesInCharts": True,
    }


def save_runs_view(mlflow_client, experiment_id: str, metric: str, direction: str,
                   revision: int | None = None) -> None:
    """The experiment opens in MLflow's model-training view, with `runs_view` saved."""
    import json

    mlflow_client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
    mlflow_client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW}",
                                     json.dumps(runs_view(metric, direction, revision=revision)))


def ui_url(experiment_id: str, base: str = UI, view: bool = True) -> str:
    """The MLflow UI's runs table of an experiment, in the classic model-training view
    (MLflow 3 otherwise opens an experiment on its GenAI overview), with the
    study's saved view (`save_runs_view`) when `view`."""
    url = f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    return url + f"&viewStateShareKey={VIEW}" if view else url
