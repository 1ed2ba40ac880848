"""`ablate claims`: run the studies of `sweeps/claims/` (each resumes like any sweep) and
write one report of their verdicts (`ablate/reporting/claims.py`).

Overrides apply to every claim's base (e.g. another corpus: `data.source=text
'data.files=[notes/*.txt]'`); with overrides or --repeats the study names get a suffix
derived from them, so runs of different settings never mix in one study.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from ablate.cli.common import add_plugin_arg, add_store_args, hub_mode, results_console

DEFAULT_DIR = Path("sweeps") / "claims"


def add_parser(sub) -> None:
    c = sub.add_parser(
        "claims", help="run the seeds' claims as studies and report a verdict for each",
        description="Run every study of sweeps/claims/ (or --only some), each resuming like "
        "`ablate sweep`, then write one report: claim, source, expected, measured difference "
        "with its 95% CI at the largest budget, verdict (reproduced / contradicted / "
        "inconclusive), the trend across budgets with the crossover and its backtest, each "
        "arm's tuned value, minutes. The "
        "report lands in $ABLATE_HOME/claims/ (markdown and HTML) and in MLflow (experiment "
        "ablate-claims).")
    c.add_argument("overrides", nargs="*", metavar="key=value",
                   help="applied to every claim's base")
    c.add_argument("--only", action="append", metavar="NAME", help="run only these claims (file "
                   "names without .yaml; repeatable or comma-separated)")
    c.add_argument("--repeats", type=int, help="seeds per point for every claim (default: each "
                   "file's own `repeats:`)")
    c.add_argument("--dir", default=None,
                   help=f"folder of claim sweep files (default: {DEFAULT_DIR})")
    c.add_argument("--report-only", action="store_true", help="do not train: report what the "
                   "studies hold now")
    add_plugin_arg(c)
    add_store_args(c, storage="Optuna storage for every claim study (default: one journal each)")


def _dir(a) -> Path:
    from ablate.errors import ConfigError

    folder = Path(a.dir) if a.dir else DEFAULT_DIR
    if not folder.is_dir():
        here = Path(__file__).resolve().parents[2] / "sweeps" / "claims"  # a source checkout
        if a.dir is None and here.is_dir():
            return here
        raise ConfigError("--dir", str(folder), "a folder of claim sweep files", "not found")
    return folder


def _files(a) -> list[Path]:
    from ablate.errors import ConfigError

    files = sorted(_dir(a).glob("*.yaml"))
    if a.only:
        wanted = [n.strip() for item in a.only for n in item.split(",") if n.strip()]
        known = {f.stem: f for f in files}
        for n in wanted:
            if n not in known:
                raise ConfigError("--only", n, ", ".join(known), "not a claim")
        files = [known[n] for n in wanted]
    return files


def _suffix(a) -> str:
    if not a.overrides and a.repeats is None:
        return ""
    key = "\0".join(sorted(a.overrides)) + f"\0repeats={a.repeats}"
    return "-" + hashlib.sha256(key.encode()).hexdigest()[:6]


def run(a) -> int:
    from rich.console import Console

    from ablate.cli.progress import SweepDisplay
    from ablate.errors import ConfigError
    from ablate.registry import load_plugins
    from ablate.reporting.claims import ClaimRow, claim_rows, study_minutes, write_and_log
    from ablate.reporting.collect import load_study
    from ablate.sweep.record import newest_revision
    from ablate.sweep.runner import Sweep
    from ablate.sweep.spec import load_sweep

    load_plugins(a.plugin)
    if a.repeats is not None and a.repeats < 1:
        raise ConfigError("--repeats", a.repeats, "an integer >= 1")
    suffix = _suffix(a)
    sweeps = []
    for f in _files(a):  # every claim checked before any trains
        spec = load_sweep(f, study=None)
        spec.study += suffix
        if a.repeats is not None:
            spec.repeats = a.repeats
        if not spec.expect:
            raise ConfigError(f"{f.name}: expect", None, "an `expect:` list",
                              "a claim needs an expectation")
        sweeps.append((f, Sweep(spec, a.overrides, storage=a.storage, tracking_uri=a.tracking_uri)))
    # offline and without `datasets`' progress bars, as `ablate sweep`, unless a claim reads the hub
    hub_mode("hub" if any(s.base_cfg.data.source == "hub" for _, s in sweeps) else "stdlib")
    console, incomplete = results_console(), 0
    for f, sweep in sweeps:
        if not a.report_only:
            console.print(f"[bold]claim {f.stem}[/] (study {sweep.spec.study})")
            with SweepDisplay(Console(stderr=True), sweep.spec.study) as display:
                study, revision = sweep.run(display.events, display)
            incomplete += not sweep.report(study, revision).ok
    rows, metrics = [], {}
    for f, sweep in sweeps:
        name = sweep.spec.study
        try:
            data = load_study(name, storage=a.storage, tracking_uri=a.tracking_uri)
        except ConfigError:  # --report-only before the study ever ran
            rows.append(ClaimRow(name, f.name, None, 0.0, "0 points", "not run yet"))
            continue
        metrics[name] = data.metric
        report = sweep.report(data.study, newest_revision(data.study))
        minutes = study_minutes(data.study)
        complete = f"{report.done}/{report.budget} points"
        rows += claim_rows(name, f.name, data, minutes, complete)
    title = "What ablate reproduces" + (f" (settings {suffix[1:]})" if suffix else "")
    md, page, run_id = write_and_log(rows, lambda r: metrics.get(r.study, "val/loss"), title,
                                     "claims" + suffix,
                                     sweeps[0][1].tracking_uri if sweeps else None)
    sys.stdout.write(md.read_text())  # plain: a markdown row is never wrapped
    console.print(f"report: {md} and {page}; MLflow: experiment ablate-claims, run {run_id}")
    if incomplete:
        print(f"ablate: {incomplete} claim studies ended with failed or missing points "
              "(their verdicts use what finished; see each study's `ablate doctor`)",
              file=sys.stderr)
        return 1
    return 0
