"""`ablate doctor --study NAME [--fix]`: check (and repair) a study after a crash.

Wired into `ablate/cli.py` like `cli_report`: `cli_doctor.add_parsers(sub)` in the parser and
`**dict.fromkeys(cli_doctor.COMMANDS, cli_doctor.run)` among the handlers.

Exit codes: 0 the study is consistent (after the fixes, with --fix); 1 problems were found and
not (all) fixed; 2 a user error (unknown study, unreachable store: one line on stderr).
"""

from __future__ import annotations

from ablate.cli_stores import add_store_args

COMMANDS = ("doctor",)


def add_parsers(sub) -> None:
    d = sub.add_parser(
        "doctor", help="check a study after a crash: Optuna vs MLflow (--fix repairs)",
        description="Report a study's trial states and what a crash left behind: RUNNING trials "
        "whose worker is dead, MLflow runs still RUNNING after their trial ended, a parent run "
        "RUNNING with nothing running, COMPLETE trials without a run or without their objective, "
        "runs without a trial, runs FINISHED although their trial FAILED, two runs of one "
        "configuration and seed; a journal's half-written records are cut (and kept aside) on "
        "opening. --fix fails dead trials (queued again: a re-run of the sweep resumes them from "
        "their checkpoint), closes stale runs and closes FAILED the FINISHED runs of failed "
        "trials; it never deletes anything and never changes a COMPLETE trial. Exit 0: "
        "consistent; 1: problems left; 2: bad input.")
    d.add_argument("--study", required=True, help="study name")
    d.add_argument("--fix", action="store_true", help="repair what can be repaired")
    add_store_args(d, storage="Optuna storage (default: $ABLATE_HOME/optuna/<study>.journal)")


def run(a) -> int:
    from rich.console import Console

    from ablate.doctor import diagnose, fix, render

    report = (fix if a.fix else diagnose)(a.study, storage=a.storage, tracking_uri=a.tracking_uri)
    render(report, Console())
    return report.exit_code
