"""Is a process alive? (Linux /proc; one place for it.)"""

from __future__ import annotations

import os


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
