"""The `ablate` command line (`main.py` assembles it; one module per command)."""

from ablate.cli.main import main

__all__ = ["main"]
