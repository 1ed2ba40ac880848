"""Journal files that a crash or a full disk cannot make unreadable (optuna#5138).

Optuna's `JournalFileBackend` appends one JSON record per line. A write cut short (a full
disk, a crash mid-append) leaves half a record at the end of the file; Optuna skips it when
reading, but the next append lands right after it, glueing the fragment to a good record,
and from then on every read raises `JSONDecodeError`: the study, finished trials included,
can no longer be loaded.

`open_backend(path)` is what the rest of ablate opens a journal with:

- before anything is written, `repair` cuts every torn fragment out of the file under the
  journal's own lock (the one Optuna's writers take), keeps the cut bytes next to the
  journal (`<journal>.torn-<time>`) and says so on stderr. A fragment at the end is cut off;
  one glued to a good record (a file already poisoned the optuna#5138 way) is cut out and
  the record kept, so every complete record stays readable.
- its appends never leave half a record behind: a write that fails (ENOSPC) is truncated
  back, and a torn tail another process left is cut before anything lands after it.

The cut is what Optuna itself skips when it reads, so a repair never changes the state of
a study that could still be read; it only makes the file safe to append to again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._file import get_lock_file

from ablate.interrupts import shielded

RECORD_START = b'{"op_code":'  # how Optuna 5 writes every record (`JournalStorage._write_log`)


@dataclass
class Cut:
    """What a repair removed from a journal."""

    path: Path
    n_bytes: int
    n_fragments: int
    backup: Path

    def summary(self) -> str:
        return (f"{self.path}: cut {self.n_bytes} bytes of {self.n_fragments} half-written "
                f"record(s) (a crash or a full disk mid-write); kept in {self.backup}")

    def message(self) -> str:
        return f"ablate: warning: {self.summary()}"


def open_backend(path: str | os.PathLike) -> DurableJournalBackend:
    """The journal at `path`, repaired, as a backend for `JournalStorage`."""
    repair(path)
    return DurableJournalBackend(str(path))


def repair(path: str | os.PathLike, report: bool = True) -> Cut | None:
    """Cut the torn records out of the journal at `path` (see the module docstring); -> what
    was cut, None when the file was sound. The check is a scan of the bytes without a lock;
    only a damaged file is locked, read again and rewritten."""
    path = Path(path)
    if not path.is_file() or _looks_sound(path.read_bytes()):
        return None
    with get_lock_file(JournalFileSymlinkLock(str(path))):  # no writer appends meanwhile
        data = path.read_bytes()
        kept, fragments = split_torn(data)
        if not fragments:
            return None
        cut = _cut(path, data, kept, fragments)
    if report:
        print(cut.message(), file=sys.stderr, flush=True)
    return cut


def _looks_sound(data: bytes) -> bool:
    """Every line one record: it ends in a newline and each line starts a record, once.

    Torn writes leave prefixes of records, so a fragment either ends the file without a
    newline or puts a second record start on a line (or a line start that is no record
    start). This is a shortcut: when it says no, `split_torn` parses every line."""
    if not data:
        return True
    lines = data.count(b"\n")
    return (data.endswith(b"\n") and data.startswith(RECORD_START)
            and data.count(RECORD_START) == lines
            and data.count(b"\n" + RECORD_START) == lines - 1)


def split_torn(data: bytes) -> tuple[bytes, list[bytes]]:
    """-> (the journal without its torn fragments, the fragments). A line that is not a JSON
    record loses the fragment glued before its record (the record is the shortest suffix of
    the line that parses: a suffix starting inside a record never balances its braces); a
    line with no complete record (the torn tail) goes whole."""
    kept, fragments = [], []
    for line in _lines(data):
        if line.endswith(b"\n") and _record(line) is not None:
            kept.append(line)
            continue
        start = _glued_record_start(line) if line.endswith(b"\n") else None
        if start is None:
            fragments.append(line)
        else:
            fragments.append(line[:start])
            kept.append(line[start:])
    return b"".join(kept), fragments


def _lines(data: bytes) -> list[bytes]:
    """Lines as Optuna reads them: split at b"\\n" only, each keeping its newline."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return [line for line in lines if line]


def _record(text: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "op_code" in value else None


def _glued_record_start(line: bytes) -> int | None:
    """Where the complete record of a line starts after a fragment (None: no record)."""
    start = line.rfind(b"{")
    while start > 0:
        if _record(line[start:]) is not None:
            return start
        start = line.rfind(b"{", 0, start)
    return None


def _cut(path: Path, data: bytes, kept: bytes, fragments: list[bytes]) -> Cut:
    """Keep the fragments next to the journal, then leave only `kept` in it (the caller holds
    the journal's lock)."""
    cut = _backup(path, fragments)
    _rewrite(path, data, kept)
    return cut


def _backup(path: Path, fragments: list[bytes]) -> Cut:
    """Write the cut bytes next to the journal before the journal changes."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.torn-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.torn-{stamp}-{n}")
    blob = b"".join(f if f.endswith(b"\n") else f + b"\n" for f in fragments)
    _write_synced(backup, blob)
    return Cut(path, sum(map(len, fragments)), len(fragments), backup)


def _rewrite(path: Path, data: bytes, kept: bytes) -> None:
    """A torn tail is cut in place (no space needed: works on a disk that is still full);
    anything else goes through a copy renamed over the journal (never half a journal)."""
    if data.startswith(kept):
        os.truncate(path, len(kept))
        return
    tmp = path.with_name(path.name + ".repairing")
    _write_synced(tmp, kept)
    shutil.copymode(path, tmp)  # a journal shared by several users stays shared
    os.replace(tmp, path)


def _write_synced(path: Path, blob: bytes) -> None:
    """`blob` on disk at `path`, or no file (a full disk must not leave half a backup)."""
    try:
        with open(path, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class DurableJournalBackend(JournalFileBackend):
    """Optuna's journal file whose appends never leave half a record behind, nor its lock
    held: a stop waits until the append is done (a lock left behind would stall the stopped
    trial's own FAIL record for the lock's grace period)."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        blob = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        with shielded(), get_lock_file(self._lock):
            size = self._cut_torn_tail()
            try:
                with open(self._file_path, "ab") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:  # ENOSPC, an interrupt: take the half record back
                with contextlib.suppress(OSError):  # never hide the error itself
                    os.truncate(self._file_path, size)
                raise

    def _cut_torn_tail(self) -> int:
        """A torn tail another process left (it died mid-write): cut it, with its backup,
        before this record lands after it. -> the journal's size."""
        path = Path(self._file_path)
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
            if size == 0 or f.read(1) == b"\n":
                return size
            f.seek(0)
            data = f.read()
        end = data.rfind(b"\n") + 1
        print(_cut(path, data, data[:end], [data[end:]]).message(), file=sys.stderr, flush=True)
        return end
