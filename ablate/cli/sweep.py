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
    s.add_argument("--dry-run", action="store_true", help="train nothing, create nothing: list "
                   "the points, each one's differences from the base config, its size and a "
                   "rough time")
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
    if a.dry_run:  # after the whole pre-flight: what would run, nothing created
        return _dry_run(sweep)
    hub_mode(sweep.base_cfg.data.source)
    if join_process_group(sweep.base_cfg.trainer.accelerator) not in (None, 0):
        sweep.follow()  # torchrun / srun: DDP inside each trial, rank 0 runs the study
        return 0
    if a.worker_index is not None:
        sweep.run_worker()
        return 0
    return _run_sweep(a, sweep, n, envs)


def _dry_run(sweep) -> int:
    """The points the study would train, in order: each point's resolved differences from the
    base, its active parameters, and a rough time from two measured training steps of its model
    on this machine (validation, checkpoints and a loaded machine come on top)."""
    import itertools

    from rich.table import Table

    from ablate.config.load import flatten, to_dict
    from ablate.sweep import space as sp
    from ablate.sweep.tune import TUNE, label
    from ablate.training.accounting import param_counts

    if not sweep.enumerate:
        print(f"study {sweep.spec.study}: {sweep.n_trials} points sampled by "
              f"{sweep.spec.sampler['name']} from: {', '.join(p.key for p in sweep.params)}")
        return 0
    base = flatten(to_dict(sweep.base_cfg))
    table = Table(title=f"study {sweep.spec.study}: what `ablate sweep` would train "
                        f"(nothing was created)", header_style="bold")
    for col in ("point", "stage", "differences from the base", "active", "seeds", "~minutes"):
        table.add_column(col, justify="right" if col in ("active", "seeds", "~minutes")
                         else "left")
    points = list(itertools.islice(sp.points(sweep.params), sweep.n_trials))
    combos = sweep.spec.tune.grid() if sweep.tuned else [{}]
    tuned = set(sweep.spec.tune.space) if sweep.tuned else set()
    plan = [(TUNE, {**p, **c}) for p in points for c in combos] if sweep.tuned else []
    plan += [(None, p) for p in points]
    total, step_seconds = 0.0, {}
    for stage, values in plan:
        # a main-stage point of a tuned study trains at the rate its tuning picks: any grid
        # value gives its size and time, its differences say "tuned"
        cfg = sweep.config_for({**combos[0], **values}, stage)
        cfg.model.vocab_size = cfg.model.vocab_size or 256
        flat = flatten(to_dict(cfg))
        diff = {k: ("tuned" if k in tuned and stage is None else v) for k, v in flat.items()
                if (base.get(k) != v or k in tuned)
                and not k.startswith(("model.moe.routed", "model.moe.expert_width",
                                      "model.moe.shared_width", "model.vocab_size"))}
        key = repr(to_dict(cfg.model)) + repr((cfg.data.batch_size, cfg.data.block_size))
        if key not in step_seconds:
            step_seconds[key] = _step_seconds(cfg)
        seeds = len(sweep.seeds(cfg, stage))
        minutes = seeds * cfg.trainer.max_steps * step_seconds[key] / 60
        total += minutes
        name = values.get(sp.ARM) or label({k: v for k, v in values.items() if k not in tuned})
        table.add_row(str(name or "(the base)"), stage or "",
                      ", ".join(f"{k}={v}" for k, v in diff.items()) or "(the base)",
                      f"{param_counts(cfg.model, cfg.data.block_size)['params_active']:,}",
                      str(seeds), f"{minutes:.1f}")
    table.caption = (f"about {total:.0f} minutes of training in all, at the speed of two "
                     "training steps of each model measured now on this machine (validation "
                     "and checkpoints come on top)")
    results_console().print(table)
    return 0


def _step_seconds(cfg) -> float:
    """Seconds per optimizer step of this config's model: one warm-up step, then two timed
    (forward, backward, AdamW) on random tokens of the study's batch shape."""
    import time

    import torch

    from ablate.training.module import LMModule

    torch.manual_seed(0)
    module = LMModule(cfg.model, cfg.optim, cfg.trainer.max_steps, cfg.data.block_size).train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    shape = (cfg.data.batch_size, cfg.data.block_size)
    batch = (torch.randint(cfg.model.vocab_size, shape), torch.randint(cfg.model.vocab_size, shape))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        lm, _, weighted = module._losses(batch)
        (lm + sum(weighted.values())).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / 2


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
