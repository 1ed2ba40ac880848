"""`ablate doctor --study NAME [--fix]`: check (and repair) a study after a crash.

Exit codes: 0 the study is consistent (after the fixes, with --fix); 1 problems were found and
not (all) fixed; 2 a user error (unknown study, unreachable store: one line on stderr).
"""

from __future__ import annotations

from ablate.cli.common import add_store_args, results_console


def add_parser(sub) -> None:
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

    from ablate.sweep.doctor import diagnose, fix

    report = (fix if a.fix else diagnose)(a.study, storage=a.storage, tracking_uri=a.tracking_uri)
    render(report, results_console())
    return report.exit_code


def render(report, console=None) -> None:
    """Rich tables: the trials (state, worker, runs), then the problems and what was done."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    states = "  ".join(f"{k} {v}" for k, v in sorted(report.states.items())) or "no trials"
    console.print(f"study [bold]{report.study}[/]  ({states})")
    console.print(f"  Optuna: {report.storage}\n  MLflow: {report.tracking_uri}  parent run "
                  f"{report.parent_run_id or '-'} {report.parent_status or ''}")
    if report.trials:
        console.print(_trials_table(report))
    for note in report.notes:
        console.print(f"  note: {note}")
    for a in report.actions:
        console.print(f"  fixed: {a}")
    if report.ok:
        console.print("[green]consistent[/]: Optuna and MLflow agree"
                      + (" (after the fixes above)" if report.actions else ""))
        return
    from rich.table import Table

    probs = Table(title="problems")
    for col in ("kind", "detail", "--fix does"):
        # a kind is a name to search for, a run id one to copy: neither is cut
        probs.add_column(col, no_wrap=col == "kind", overflow="fold")
    for p in report.problems:
        probs.add_row(p.kind, escape(p.detail), p.fix or "nothing (reported only)")
    console.print(probs)
    fixable = any(p.fix for p in report.problems)
    console.print(f"[red]{len(report.problems)} problem(s)[/]"
                  + ("; run again with --fix to repair" if fixable and not report.actions else ""))


def _trials_table(report):
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("trial", "state", "worker", "MLflow runs", "params", "note"):
        table.add_column(col)
    colour = {"COMPLETE": "green", "FAIL": "red", "RUNNING": "yellow", "PRUNED": "cyan"}
    for t in report.trials:
        runs = ", ".join(f"{rid[:8]} {st}" for rid, st in t.run_status.items()) or "-"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in t.params.items())
        worker = t.worker + (f" pid {t.pid}" if t.worker in ("alive", "dead") else "")
        table.add_row(str(t.number), f"[{colour.get(t.state, 'white')}]{t.state}[/]", worker,
                      runs, params[:60], escape(t.note))
    return table
