"""Aux losses are registered with what they read: every built-in loss of `ablate.losses.aux`
declares the router outputs it needs and carries its formula in its docstring."""

from __future__ import annotations

from ablate.losses import aux
from ablate.registry import AUX_LOSSES

BUILTIN = {"switch", "importance", "z", "seq_aux", "device", "comm"}


def test_every_builtin_loss_is_registered_with_its_needs_and_formula():
    builtin = {n for n in AUX_LOSSES.names()  # (a plugin may have added its own)
               if AUX_LOSSES.get(n).obj.__module__ == aux.__name__}
    assert builtin == BUILTIN
    for name in builtin:
        fn = AUX_LOSSES.get(name).obj
        assert fn.needs  # checked against the router up front (models/moe/checks.py)
        assert fn.__doc__ and fn.__doc__ == getattr(aux, f"{name}_loss").__doc__  # written once
