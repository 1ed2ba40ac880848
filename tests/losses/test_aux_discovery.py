"""Aux losses are discovered: every module of `ablate.losses.aux` (but the shared `common`)
is one loss, registered under the module's name, with its `needs` declared."""

from __future__ import annotations

import importlib
import pkgutil

from ablate.losses import aux
from ablate.registry import AUX_LOSSES


def test_every_module_of_the_package_is_a_registered_loss():
    modules = {m.name for m in pkgutil.iter_modules(aux.__path__)} - {"common"}
    builtin = {n for n in AUX_LOSSES.names()  # (a plugin may have added its own)
               if AUX_LOSSES.get(n).obj.__module__.startswith("ablate.losses.aux.")}
    assert modules == builtin and {"switch", "z", "seq_aux"} <= builtin
    for name in modules:
        entry = AUX_LOSSES.get(name)
        assert entry.obj.__module__ == f"ablate.losses.aux.{name}"  # one loss per file
        assert entry.obj.needs  # checked against the router up front (models/moe/checks.py)
        assert importlib.import_module(entry.obj.__module__).__doc__  # the paper, in one line
