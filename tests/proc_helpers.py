"""What other processes on this machine are running, read from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def command_lines() -> list[str]:
    """The command line of every live process, arguments joined by spaces."""
    found = []
    for f in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(f.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            continue
    return found
