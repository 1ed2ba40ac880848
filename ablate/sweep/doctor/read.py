"""Everything the doctor reads, and nothing it writes: the study's Optuna storage and MLflow
store (never created), its journal (repaired as every opening does), and which processes of
this host live. `snapshot()` hands it to the pure `diagnosis`."""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate import paths
from ablate.errors import ConfigError
from ablate.sweep import proc
from ablate.sweep.doctor.diagnosis import Report, Snapshot, diagnose_snapshot
from ablate.sweep.record import TrialRecord, parent_run_id, revisions
from ablate.tracking.runs import find_runs
from ablate.tracking.store import check_reachable, mask, resolve_tracking_uri
from ablate.tracking.tags import STUDY


@dataclass
class Stores:
    """One study's stores, opened for the doctor."""

    study: Any  # the Optuna study
    storage: Any  # its Optuna storage object (what its trials are written through)
    url: str | None  # --storage as given (None: the default journal)
    uri: str  # the tracking URI
    client: Any  # an MlflowClient, or None when no MLflow store exists there
    cut: Any = None  # what was cut from the journal on opening (ablate.sweep.journal.Cut)


def open_stores(study: str, storage: str | None, tracking_uri: str | None) -> Stores:
    """Open an existing study and its MLflow store; ConfigError (one line, exit 2) for an
    unknown study or an unreachable store."""
    from ablate.sweep.spec import check_study_name
    from ablate.sweep.storages import load_study

    check_study_name(study, "--study")
    uri = resolve_tracking_uri(tracking_uri)
    cut = _repair_journal(study, storage)
    with warnings.catch_warnings():  # RDB heartbeat options are "experimental": not news here
        warnings.simplefilter("ignore")
        opt, st = load_study(study, storage)
    return Stores(opt, st, storage, uri, _open_client(uri), cut)


def check(stores: Stores) -> Report:
    """Read the stores now and diagnose what they hold."""
    return diagnose_snapshot(snapshot(stores))


def diagnose(study: str, storage: str | None = None, tracking_uri: str | None = None) -> Report:
    """Check of one study (Optuna storage + MLflow store): it changes nothing, except cutting
    a journal's half-written records as every opening of a study does. Raises ConfigError
    (one line, exit 2) for an unknown study or an unreachable store."""
    stores = open_stores(study, storage, tracking_uri)
    report = check(stores)
    if stores.cut is not None:
        report.notes.append(f"repaired the journal on opening: {stores.cut.summary()}")
    return report


def snapshot(stores: Stores) -> Snapshot:
    """The study's trials, its runs and the liveness of its workers, read now."""
    opt, client, host = stores.study, stores.client, socket.gethostname()
    name = opt.study_name
    parent = parent_run_id(opt)
    runs = _study_runs(client, name, parent)
    parent_run = runs.pop(parent, None) if parent else None
    if parent and parent_run is None and client is not None:
        try:  # the parent may live in an experiment of another name: look it up directly
            parent_run = client.get_run(parent)
        except Exception:  # noqa: BLE001 - deleted from the store
            parent_run = None
    trials = opt.get_trials(deepcopy=False)
    records = [TrialRecord.of(t) for t in trials if t.state.name == "RUNNING"]
    workers = {r.pid for r in records if r.host == host}
    running = parent_run is not None and parent_run.info.status == "RUNNING"
    return Snapshot(
        study=name,
        storage=mask(stores.url or str(paths.default_storage_path(name))),
        tracking_uri=mask(stores.uri), trials=trials, runs=runs, has_store=client is not None,
        parent_run_id=parent, parent_run=parent_run,
        revisions=revisions(opt), host=host,
        live_pids={pid for pid in workers if pid is not None and proc.alive(pid)},
        orphan_pids={pid for pid in workers if pid is not None and proc.alive(pid)
                     and proc.orphan_worker(pid)},
        sweep_pids=sweep_processes() if running else [],
    )


def _open_client(uri: str):
    """MlflowClient on `uri`, or None when the local SQLite file does not exist (nothing was
    ever logged there; opening it would create it)."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None
    check_reachable(uri)  # a dead server: one line in seconds, not minutes of retries
    return MlflowClient(tracking_uri=uri)


def _study_runs(client, study: str, parent: str | None) -> dict[str, Any]:
    """Every active run of the study: tagged `ablate.study`, or a child of its parent run
    (upcycling's dense parents carry only the parent tag)."""
    if client is None:
        return {}
    try:
        found = find_runs(client, f"tags.`{STUDY}` = '{study}'")
        if parent:
            found += find_runs(client, f"tags.`mlflow.parentRunId` = '{parent}'")
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a broken or unreachable store: one line
        raise ConfigError("--tracking-uri", mask(client.tracking_uri), "a readable MLflow store",
                          f"cannot read it ({type(e).__name__})") from None
    return {r.info.run_id: r for r in found}


def _home_of(pid: int) -> Path | None:
    """The ABLATE_HOME a process writes to (its environment, relative to its cwd)."""
    env, cwd = proc.environ(pid), proc.cwd(pid)
    if env is None or cwd is None:
        return None
    home = Path(os.fsdecode(env.get(b"ABLATE_HOME", b"ablate-runs"))).expanduser()
    return (cwd / home).resolve()


def sweep_processes() -> list[int]:
    """Live `ablate sweep` processes on this host writing to this ABLATE_HOME: their parent
    run is legitimately RUNNING even between two trials."""
    here, found = paths.home(), []
    for pid in proc.pids():
        words = proc.cmdline(pid)
        if words is None or pid == os.getpid():
            continue
        if "sweep" in words and any(w == "ablate" or w.endswith("/ablate") for w in words) \
                and _home_of(pid) == here:
            found.append(pid)
    return found


def _repair_journal(study: str, storage: str | None):
    """Cut a journal's half-written records here, to show it in the report (opening the study
    would cut them anyway, with a line on stderr: `ablate.sweep.journal`). A journal with a
    fragment glued to a good record cannot even be read before this."""
    from ablate.sweep.journal import repair
    from ablate.sweep.storages import journal_path

    path = journal_path(storage, study)
    return repair(path, report=False) if path is not None else None
