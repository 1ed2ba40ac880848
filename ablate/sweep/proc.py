"""Processes on this machine, read from Linux /proc (one place for it): is a pid alive, and
what it runs, where, with which environment."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int | None) -> bool:
    """True while the process runs; a zombie (killed, not yet waited for) counts as dead."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def parent(pid: int) -> int | None:
    """A process's parent pid (1, or a subreaper's, once its parent died); None when gone."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def orphan_worker(pid: int) -> bool:
    """A worker of `ablate sweep --workers N` whose parent sweep is gone (it was started with
    `--worker-index`, and its parent is no longer an ablate process)."""
    words = cmdline(pid) or []
    if "--worker-index" not in words:
        return False
    ppid = parent(pid)
    return ppid is not None and "ablate" not in " ".join(cmdline(ppid) or [])


def pids() -> list[int]:
    """Every process id on this machine (one snapshot: some may be gone when read)."""
    return sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())


def cmdline(pid: int) -> list[str] | None:
    """The words a process was started with; None when it is gone (or not readable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")]


def environ(pid: int) -> dict[bytes, bytes] | None:
    """A process's environment as it started; None when it is gone or another user's."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(kv.split(b"=", 1) for kv in raw.split(b"\0") if b"=" in kv)


def cwd(pid: int) -> Path | None:
    """A process's working directory; None when it is gone or another user's."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
