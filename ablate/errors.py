"""One-line user errors: the CLI prints `error: <key>=<value>: <why> (allowed: ...)` and exits 2."""
from __future__ import annotations

from typing import Any


class AblateError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


class ConfigError(AblateError):
    def __init__(self, key: str, value: Any, allowed: str, why: str = "invalid value"):
        self.key, self.value, self.allowed, self.why = key, value, allowed, why
        super().__init__(f"{key}={value!r}: {why} (allowed: {allowed})")
