"""The `ablate` command line: the parser assembled from one module per command, and main()
(under `GracefulSignals`: SIGTERM is a Ctrl-C, exit code 130). Errors a user can fix: one
line on stderr, exit code 2.

A command is a module of this package with `add_parser(sub)` (its subparser) and `run(args)
-> exit code`, listed once in COMMANDS. A command whose subparser has an `overrides`
positional also takes key=value overrides given after its --options.
"""

from __future__ import annotations

import argparse
import os
import sys

from ablate.cli import bench, claims, compare, config, dashboard, doctor, sweep, train, ui
from ablate.cli.common import Parser, apply_env, name_the_source
from ablate.interrupts import GracefulSignals
from ablate.tracking import full_disk  # (its import quiets MLflow's own full-disk traceback)

COMMANDS = {"train": train, "sweep": sweep, "compare": compare, "dashboard": dashboard,
            "claims": claims, "doctor": doctor, "ui": ui, "bench": bench, "config": config}

EPILOG = """\
Overrides are plain OmegaConf dotlists, the same dotted keys as in sweep files and in
MLflow params:   ablate train model.ffn=moe model.moe.n_experts=8 model.moe.top_k=2

Everything is written under ./ablate-runs (set ABLATE_HOME to move it): mlflow.db and
artifacts/ (MLflow), optuna/ (study journals), cache/ (tokenized data).

Start here:
  ablate sweep sweeps/quickstart.yaml     dense vs MoE on the Python stdlib corpus (CPU)
  ablate ui                               open the results in the MLflow UI
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="ablate",
        description="Ablation studies of Mixture-of-Experts language models: train, sweep with "
        "Optuna, compare in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def _environment() -> None:
    """Inherited by workers and the local MLflow server: no URL (with credentials) printed by
    MLflow, no telemetry, caches under ABLATE_HOME instead of ~."""
    from ablate import paths

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MPLCONFIGDIR", str(paths.cache_dir() / "matplotlib"))


def main(argv: list[str] | None = None) -> int:
    from ablate.errors import AblateError

    _environment()
    parser = build_parser()
    a, extra = parser.parse_known_args(argv)
    bad = [x for x in extra if "=" not in x or x.startswith("-")]
    if bad or (extra and not hasattr(a, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:  # key=value overrides given after --options
        a.overrides += extra
    if a.command is None:
        parser.print_help()
        return 0
    apply_env(a)
    try:
        with GracefulSignals():
            return COMMANDS[a.command].run(a)
    except AblateError as e:
        from ablate.tracking.store import mask

        print(f"error: {mask(str(name_the_source(e, a)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; re-run the same command to resume",
              file=sys.stderr)
        return 130
    except (Exception, full_disk.StoreFull) as e:  # ENOSPC under the stores: one line, no traceback
        if not full_disk.is_full(e):
            raise
        print(full_disk.line(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
