"""`ablate sweep`: run (or resume) an Optuna study from a sweep file, as one worker or as
the parent of N workers, then the table, the verdicts and the next commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ablate.cli.common import (
    add_plugin_arg,
    add_store_args,
    hub_mode,
    join_process_group,
    results_console,
)
from ablate.sweep.record import TrialRecord


def add_parser(sub) -> None:
    s = sub.add_parser("sweep", help="run (or resume) an Optuna study from a sweep file",
                       description="Run an Optuna study defined in SWEEP.yaml: one MLflow parent "
                       "run, one child run per trial. Re-running the same command resumes it.")
    s.add_argument("sweep", metavar="SWEEP.yaml", help="the sweep file (docs/sweep-files.md)")
    s.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every trial")
    s.add_argument("--study", help="study name (default: the file's `study:`)")
    s.add_argument("--n-trials", type=int, help="total trial budget of the study")
    s.add_argument("--timeout", type=float, help="stop starting new trials after S seconds")
    add_store_args(s, storage="Optuna storage (default: $ABLATE_HOME/optuna/<study>.journal)")
    s.add_argument("--workers", type=int, help="worker processes on this machine (default 1, "
                   "or one per GPU group)")
    s.add_argument("--gpus", help="GPU indices to use, e.g. 0,1,2,3")
    s.add_argument("--gpus-per-trial", type=int, default=1,
                   help="GPUs per worker (DDP inside a trial)")
    add_plugin_arg(s)
    s.add_argument("--extend", action="store_true", help="the sweep file or overrides changed "
                   "what the stored study measures: record it as the study's next revision "
                   "(ablate compare keeps revisions apart) instead of refusing")
    s.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the parent


def run(a) -> int:
    from ablate.errors import ConfigError
    from ablate.registry import load_plugins
    from ablate.sweep.runner import Sweep
    from ablate.sweep.spec import check_study_name, load_sweep
    from ablate.sweep.workers import parse_gpus, plan_devices

    load_plugins(a.plugin)
    if a.n_trials is not None and a.n_trials < 1:
        raise ConfigError("--n-trials", a.n_trials, "an integer >= 1")
    if a.timeout is not None and not a.timeout > 0:
        raise ConfigError("--timeout", a.timeout, "seconds > 0")
    spec = load_sweep(a.sweep, study=check_study_name(a.study, "--study") if a.study else None)
    if a.workers is not None and a.workers < 1:
        raise ConfigError("--workers", a.workers, "an integer >= 1")
    n, envs = plan_devices(a.workers, parse_gpus(a.gpus), a.gpus_per_trial)
    if a.gpus:  # the trials use the GPUs they were handed
        a.overrides += ["trainer.accelerator=gpu", f"trainer.devices={a.gpus_per_trial}"]
    sweep = Sweep(spec, a.overrides, storage=a.storage, tracking_uri=a.tracking_uri,
                  n_trials=a.n_trials, timeout=a.timeout, worker=a.worker_index or 0, workers=n,
                  extend=a.extend)
    hub_mode(sweep.base_cfg.data.source)
    if join_process_group(sweep.base_cfg.trainer.accelerator) not in (None, 0):
        sweep.follow()  # torchrun / srun: DDP inside each trial, rank 0 runs the study
        return 0
    if a.worker_index is not None:
        sweep.run_worker()
        return 0
    return _run_sweep(a, sweep, n, envs)


def _run_sweep(a, sweep, n: int, envs: list[dict[str, str]]) -> int:
    """This process trains (one worker) or watches N workers; then the table and the verdict:
    exit 0 only when every point of the budget is done."""
    from rich.console import Console

    from ablate.cli.progress import SweepDisplay

    console, spec = results_console(), sweep.spec
    rc = 0
    with SweepDisplay(Console(stderr=True), spec.study) as display:
        if n > 1 or a.gpus_per_trial > 1:
            state = {}

            def tick(study) -> None:
                if not state:
                    state.update(total=sweep.n_trials, done0=sum(
                        t.state.name in ("COMPLETE", "PRUNED")
                        for t in study.get_trials(deepcopy=False)))
                display.tick(study, **state)

            study, revision, rc = sweep.run_parallel(lambda i: _worker_argv(a, sweep, n, i),
                                                     lambda i: envs[i], tick)
        else:
            study, revision = sweep.run(display.events, display)
    if rc:
        console.print(f"[yellow]a worker exited with code {rc}; see {_logs(spec.study)}[/]")
    console.print(trials_table(study, [o.metric for o in spec.objectives]))
    _verdicts(console, spec.study, sweep.storage_url, sweep.tracking_uri)
    _next_commands(console, sweep, study)
    report = sweep.report(study, revision)
    if report.ok:
        console.print(report.last_line(spec.study))
        return 0
    print(f"ablate: {report.last_line(spec.study)}", file=sys.stderr, flush=True)
    return 1


def _next_commands(console, sweep, study) -> None:
    """Where to look next: the table, the plots, the MLflow UI (a link to the study's runs)."""
    from pathlib import Path

    from ablate.sweep.record import parent_run_id
    from ablate.tracking import store

    name = sweep.spec.study
    dashboard = Path("dashboards") / f"{name}.yaml"
    dashboard = dashboard if dashboard.is_file() else Path("dashboards") / "moe_overview.yaml"
    parent = parent_run_id(study)
    link = ""
    try:
        exp = (store.client(sweep.tracking_uri).get_run(parent).info.experiment_id if parent
               else None)
        if exp:
            link = f"  (then open {store.ui_url(exp)})"
    except Exception:  # noqa: BLE001 - a link is a courtesy, never a failure
        pass
    storage = f" --storage {store.mask(sweep.storage_url)}" if sweep.storage_url else ""
    console.print("next:\n"
                  f"  ablate compare --study {name}{storage}          "
                  "arms: mean ± 95% CI, verdicts\n"
                  f"  ablate dashboard {dashboard} --study {name}{storage}   plots, one HTML file\n"
                  f"  ablate ui{link}")


def _verdicts(console, study: str, storage: str | None, tracking_uri: str) -> None:
    """The study's expectations judged on what it measured: printed, and logged to the parent
    run (tags ablate.claim.<i>, claims.json, the run's description); with budgets, each arm
    and expectation at each budget and the trend (budgets.json, ablate.budget.<i>.*)."""
    from ablate.reporting import budgets, tuning
    from ablate.reporting.collect import load_study
    from ablate.reporting.compare import compare
    from ablate.reporting.compare_render import to_markdown
    from ablate.reporting.verdicts import judge_all, log_verdicts, to_rich

    data = load_study(study, storage=storage, tracking_uri=tracking_uri)
    tuned = tuning.tuning_view(data)
    if tuned is not None:
        console.print(tuning.to_rich(tuned))
    view = budgets.budget_view(data)
    if view is not None:
        console.print(budgets.to_rich(view))
        if data.parent_run_id:
            budgets.log_view(data.client, data.parent_run_id, view)
    verdicts = judge_all(data)
    if verdicts:
        console.print(to_rich(verdicts, data.metric))
        if data.parent_run_id:
            c = compare(data)
            log_verdicts(data.client, data.parent_run_id, verdicts, data.metric,
                         to_markdown(c) if c.rows else "")


def _logs(study: str):
    from ablate import paths

    return paths.home() / "logs" / study


def _worker_argv(a, sweep, n: int, i: int) -> list[str]:
    launch = [sys.executable, "-m", "ablate"]
    if a.gpus_per_trial > 1:  # each worker is a torchrun group: DDP inside its trials
        from ablate.tracking.server import free_port

        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                  str(a.gpus_per_trial), "--master-port", str(free_port()), "-m", "ablate"]
    argv = [*launch, "sweep", a.sweep, *a.overrides, "--study", sweep.spec.study,
            "--n-trials", str(sweep.n_trials), "--worker-index", str(i), "--workers", str(n)]
    argv += ["--timeout", str(a.timeout)] if a.timeout else []
    argv += ["--extend"] if a.extend else []
    for plugin in a.plugin:
        argv += ["--plugin", plugin]
    return argv


def _note(rec: TrialRecord) -> str:
    """Why a trial is what it is, in a few words: its stage, why it failed."""
    parts = [rec.stage or ""]
    if rec.fail_reason:
        reason = rec.fail_reason
        parts.append("interrupted" if reason.startswith("interrupted") else reason[:60])
    return ", ".join(p for p in parts if p)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def trials_table(study, objectives: list[str], title: str = ""):
    """The study's final comparison table (rich), one row per trial: its revision when the
    study has several, and a note (why it failed, its tuning stage)."""
    import optuna
    from rich.table import Table

    trials = study.get_trials(deepcopy=False)
    revs = len({TrialRecord.of(t).revision for t in trials}) > 1
    table = Table(title=title or f"study {study.study_name}", header_style="bold")
    for col in ["trial", *(["rev"] if revs else []), "state", "arm / params", *objectives,
                "params_active", "tokens/s", "min", "note"]:
        table.add_column(col, justify="left" if col in ("state", "arm / params", "note")
                         else "right")
    multi = len(study.directions) > 1
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1

    def key(t):
        done = t.state == optuna.trial.TrialState.COMPLETE and t.values
        return (0, sign * t.values[0]) if done else (1, t.number)

    for t in sorted(trials, key=key):
        rec = TrialRecord.of(t)
        m = rec.metrics
        label = t.params.get("arm") or ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        extra = {k: v for k, v in t.params.items() if k != "arm"}
        if "arm" in t.params and extra:
            label += " " + ", ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
        values = list(t.values) if t.values else [m.get(o) for o in objectives]
        minutes = t.duration.total_seconds() / 60 if t.duration else None
        table.add_row(str(t.number), *([str(rec.revision)] if revs else []), t.state.name, label,
                      *(_fmt(v) for v in values), _fmt(m.get("params_active")),
                      _fmt(m.get("perf/tokens_per_s")), _fmt(minutes), _note(rec))
    if multi:
        table.caption = "Pareto set: trials " + ", ".join(str(t.number) for t in study.best_trials)
    return table
