"""Name -> (class or function, config dataclass) registries.

A router, aux loss or expert kind is one small file that calls `ROUTERS.register(...)`;
nothing else changes to add one, and the tests parametrize over the registry, so a new
entry is tested the moment it exists. Users register their own from outside with
`--plugin mypkg.module` or the `ablate.plugins` entry-point group.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from ablate.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any  # the class or function
    config: type | None  # its config dataclass, if it has options


class Registry:
    def __init__(self, kind: str, key: str, builtins: tuple[str, ...] | None = None):
        self.kind, self.key = kind, key  # key: the config key users type, for errors
        self._entries: dict[str, Entry] = {}
        self._builtins, self._loaded = builtins, False  # None: the model registries' modules
        self.default: str | None = None  # the name `get(None)` means (set by the package)

    def _load(self) -> None:
        if self._builtins is None:
            _load_builtins()
        elif not self._loaded:
            self._loaded = True
            for mod in self._builtins:
                importlib.import_module(mod)

    def register(self, name: str, config: type | None = None) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            self._entries[name] = Entry(name, obj, config)
            return obj

        return deco

    def get(self, name: str | None, key: str | None = None) -> Entry:
        self._load()
        name = self.default if name is None else name
        if name not in self._entries:
            raise ConfigError(key or self.key, name, ", ".join(self.names()),
                              f"unknown {self.kind}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


ROUTERS = Registry("router", "model.moe.router.name")
AUX_LOSSES = Registry("aux loss", "model.moe.aux")
# the parts a composed router is made of (ablate/models/moe/routers/): a router name is a
# bundle of one of each, and a sweep can set each part on its own
SCORES = Registry("router score", "model.moe.router.score")
SELECTIONS = Registry("router selection", "model.moe.router.select")
GATES = Registry("router gate", "model.moe.router.gate")
# names the config validates against without importing the layer that implements them
TOKENIZERS = Registry("tokenizer", "data.tokenizer", builtins=("ablate.data.tokenizer",))
# checks of a resolved config that need a layer above config (e.g. building a router on the
# meta device): load_config runs every one (`ablate/models/moe/checks.py` registers its own)
CONFIG_CHECKS = Registry("config check", "config")

_BUILTINS = ("ablate.models.moe.routers", "ablate.losses.aux", "ablate.models.moe.checks")
_loaded = False


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTINS:
            importlib.import_module(mod)
        for ep in entry_points(group="ablate.plugins"):
            ep.load()


def load_plugins(modules: list[str]) -> None:
    """Import user modules that register routers/losses (`--plugin mypkg.routers`).

    The working directory is searched too, after everything else (`myrouters.py` next to
    the sweep file works with the `ablate` script as with `python -m ablate`, and a file
    there never shadows an installed package). A module that fails to import, for any
    reason, is one line naming --plugin, not a traceback."""
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError("--plugin", mod, "an importable Python module",
                              _one_line(e)) from None
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's module: any error
            raise ConfigError("--plugin", mod, "a module that imports without error",
                              f"{type(e).__name__} at import: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0] or type(e).__name__
