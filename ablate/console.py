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
