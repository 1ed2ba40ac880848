"""Everything a user can name, listed from where it is defined (`ablate config keys`).

Config keys come from the schema dataclasses: type, default, domain (`ablate.config.domains`)
and the `help=` each field declares; `model.moe.router.*` from the router config dataclasses,
with the router part that reads each option (the parts' `options`); `model.moe.aux.<loss>`
from the aux-loss registry. Then every registered name a config, sweep or dashboard file
can use: routers and their parts, samplers and pruners, dashboard panels, MoE presets, and
the metric names a run logs. Nothing here is a second copy that could drift: a new field,
router, panel or preset shows up the moment it exists. The keys: `keys.py`; the registered
names: `names.py`; how both are written: `text.py`.
"""

from __future__ import annotations

from ablate.errors import ConfigError
from ablate.reference.keys import config_keys
from ablate.reference.names import sections
from ablate.reference.text import columns


def listing(prefix: str = "") -> str:
    """`ablate config keys PREFIX`: the config keys and sections (or their rows) it selects."""
    keys = [k for k in config_keys() if k.key.startswith(prefix)]
    out = []
    if keys:
        out.append("config keys: key=value on the command line, or in a config file or a sweep "
                   "file (base, space, arms)")
        out += columns([("KEY", "TYPE", "DEFAULT", "HELP")] + [
            (k.key, k.type, k.default, f"{k.help} (allowed: {k.allowed})") for k in keys])
    for s in sections():
        whole = not prefix or s.id.startswith(prefix) or s.where.startswith(prefix)
        rows = s.rows if whole else [r for r in s.rows if r[0].startswith(prefix)]
        if rows:
            out += ["", s.title] + columns(rows, indent="  ")
    if not out:
        ids = ", ".join(s.id for s in sections())
        raise ConfigError("PREFIX", prefix, f"the start of a config key (model.moe, data, ...) or "
                          f"one of {ids}", "matches nothing")
    return "\n".join(out).lstrip("\n") + "\n"
