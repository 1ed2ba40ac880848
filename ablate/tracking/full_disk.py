"""A full disk under the stores (the journal, mlflow.db, artifacts) stops the sweep in one line.

The same ENOSPC reaches ablate in several costumes: an `OSError` from Optuna's journal or
MLflow's artifact repository, an `MlflowException` wrapping SQLite's "database or disk is
full", or an unrelated error (Optuna's "Should not reach." assertion, a failed clean-up)
raised while handling one of these. `is_full` looks through the whole chain of causes.

A full store is not a failed trial: nothing the trial does can be recorded, and failing
it would spend one of its retries on the disk. `StoreFull` therefore stops the sweep the
way an interrupt does (it is no `Exception`, so no trial loop catches it): the trial stays
RUNNING, and once space is freed the next `ablate sweep` (or `ablate doctor --fix`) fails
it as a dead worker's and resumes it from its checkpoint. The CLI prints `line(e)`.

Importing this module quiets MLflow's own report of a full SQLite store (a multi-line
traceback logged before it raises): the caller reports it, in one line.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left, disk quota exceeded
SQLITE_FULL = 13  # sqlite3's result code for "database or disk is full"
FULL_TEXTS = ("database or disk is full", "No space left on device", "Disk quota exceeded")


class StoreFull(BaseException):
    """A store's disk is full: stop the sweep, keep the trial for the next run (see above)."""


def is_full(exc: BaseException | None) -> bool:
    """Whether `exc` or anything in its chain of causes is a full disk."""
    return _full_cause(exc) is not None


def _full_cause(exc: BaseException | None) -> BaseException | None:
    """The deepest full-disk error in the chain of `exc` (the most specific), or None."""
    found, seen = None, set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StoreFull) or _says_full(exc):
            found = exc
        exc = exc.__cause__ or exc.__context__
    return found


def _says_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    if getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
        return True
    return any(t in str(exc) for t in FULL_TEXTS)  # e.g. MLflow's wrapper of the SQLite error


def line(exc: BaseException) -> str:
    """The one line a full disk ends a command with: which file system is full (the one the
    failing file is on, else the fullest of ABLATE_HOME's, its checkpoints' and the temporary
    folder's), and the way out."""
    from ablate import paths

    cause = _full_cause(exc)
    if isinstance(cause, OSError) and cause.filename:
        what = f"{cause.strerror}: {cause.filename}"
    else:
        what = next((t for t in FULL_TEXTS if t in str(cause)), "no space left on device")
    filename = getattr(cause, "filename", None)
    candidates = ([Path(filename)] if filename else []) + [
        paths.home(), paths.home() / "checkpoints", Path(tempfile.gettempdir())]
    full = _fullest(candidates)
    where = f"{full[0]} has {full[1] / 2**20:.0f} MiB free" if full else f"under {paths.home()}"
    return (f"error: the disk is full ({what}; {where}); finished trials are kept: free space "
            f"there, run `ablate doctor --study NAME --fix`, then the same command again")


def _fullest(candidates: list[Path]) -> tuple[Path, int] | None:
    """(mount point, free bytes) of the file system with the least room among `candidates`
    (each read at its nearest existing folder); None when none can be read."""
    out = []
    for p in candidates:
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        mount = p.resolve()
        while not os.path.ismount(mount) and mount != mount.parent:
            mount = mount.parent
        out.append((st.f_bavail * st.f_frsize, mount))
    if not out:
        return None
    free, mount = min(out)
    return mount, free


class _DropFullDiskReports(logging.Filter):
    """MLflow logs every SQLite error with its traceback before raising it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (is_full(exc) or any(t in record.getMessage() for t in FULL_TEXTS))


_LOGGER = logging.getLogger("mlflow.store.db.utils")
if not any(isinstance(f, _DropFullDiskReports) for f in _LOGGER.filters):
    _LOGGER.addFilter(_DropFullDiskReports())
