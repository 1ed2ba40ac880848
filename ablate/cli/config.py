"""`ablate config show` and `ablate config keys`: the resolved config, and every key and name.

Bad input is a `ConfigError` from `load_config` (one line, exit 2).
"""

from __future__ import annotations

import sys

from ablate.cli.common import add_plugin_arg, split_config


def add_parser(sub) -> None:
    c = sub.add_parser(
        "config", help="the resolved config (show) and every key with its help (keys)",
        description="Inspect configs without running anything: `show` prints the config a run "
        "would use; `keys` lists every key and every registered name.")
    actions = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser(
        "show", help="print the resolved config as YAML",
        description="Print the config `ablate train` would use with the same arguments: the "
        "defaults, CONFIG.yaml and the overrides merged, the MoE preset applied, budget and "
        "derived sizes filled in, validated. model.vocab_size stays null until the tokenizer "
        "sets it.")
    s.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                   help="a config file first (optional), then dotted overrides")
    add_plugin_arg(s)
    k = actions.add_parser(
        "keys", help="list every config key and registered name with one line of help",
        description="Every config key (type, default, help, allowed values), then every "
        "registered name: routers and their parts, samplers, pruners, dashboard panels, MoE "
        "presets and the metrics a run logs.")
    k.add_argument("prefix", nargs="?", default="", metavar="PREFIX",
                   help="only keys starting with PREFIX (e.g. model.moe.router), or a section: "
                   "routers, scores, selections, gates, samplers, pruners, panels, presets, "
                   "metrics")
    add_plugin_arg(k)


def run(a) -> int:
    from ablate.registry import load_plugins

    load_plugins(a.plugin)
    if a.action == "show":
        from ablate.config.load import load_config, to_yaml

        path, overrides = split_config(a.overrides)
        sys.stdout.write(to_yaml(load_config(path, overrides)))
        return 0
    from ablate.cli.catalogue import listing

    sys.stdout.write(listing(a.prefix))
    return 0
