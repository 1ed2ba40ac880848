"""Terminal hygiene: the progress bars and results, not library chatter."""

from __future__ import annotations

import logging


def quiet_libraries() -> None:
    """Keep the sweep's terminal for the progress bars: library chatter to WARNING."""
    import warnings

    import lightning  # noqa: F401 - these imports set their loggers to INFO; override after
    import mlflow  # noqa: F401

    for name in ("lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*is experimental.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


class quiet_stderr:
    """Native code's own stderr lines off (file descriptor 2, not only `sys.stderr`): the
    CPU profiler's `USDT: profiler_start` lines, c10 warnings. `keep=True` leaves it alone."""

    def __init__(self, keep: bool = False):
        self.keep, self.saved = keep, None

    def __enter__(self):
        import os
        import sys

        if not self.keep:
            sys.stderr.flush()
            self.saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        return self

    def __exit__(self, *exc) -> None:
        import os

        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
            self.saved = None
