"""`ablate compare` and `ablate dashboard`: reading a finished (or running) study back.

Wired into `ablate/cli.py` by `add_parsers(sub)` in the parser and `run` as the handler of
both commands. Errors a user can fix raise `AblateError`/`ConfigError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys

from ablate.cli_stores import add_store_args

COMMANDS = ("compare", "dashboard")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", action="append", metavar="PARAM",
                   help="group runs into arms by this param (a search-space param or any logged "
                   "config key, e.g. model.moe.top_k); repeatable or comma-separated "
                   "(default: the `arm` param, else all search-space params)")
    p.add_argument("--metric", help="metric to compare (default: the study's first objective)")
    p.add_argument("--revision", default=None, help="which revision of the study (made by "
                   "`ablate sweep --extend`) to read: a number or `all` (default: the newest; "
                   "revisions are never pooled unless asked)")
    add_store_args(p, storage="Optuna storage (default: $ABLATE_HOME/optuna/<study>.journal)")


def add_parsers(sub) -> None:
    c = sub.add_parser(
        "compare", help="terminal table of arms: mean ± 95%% CI, difference to a baseline, p-value",
        description="One row per arm of a study: mean ± 95% CI of the metric over its completed "
        "runs (trials x repeats), the difference to the baseline arm with the p-value of a paired "
        "t-test over seeds matched by trainer.seed (Welch's t-test where seeds cannot be matched), "
        "parameter counts and throughput.")
    c.add_argument("--study", required=True, help="study name")
    c.add_argument("--baseline", metavar="ARM", help="arm to compare against (default: the first "
                   "arm of the sweep file)")
    c.add_argument("--format", default="table", help="table (default), csv, json or markdown")
    c.add_argument("--log", action="store_true", help="also log summary/arms.{csv,md} to the "
                   "study's MLflow parent run")
    _common(c)

    d = sub.add_parser(
        "dashboard", help="render a dashboard (one offline HTML file) and log it to MLflow",
        description="Render DASHBOARD.yaml for a study into one self-contained HTML file "
        "(plotly.js embedded: opens offline) and log it to the study's MLflow parent run as "
        "dashboards/<name>.html, with the arm summary as summary/arms.csv and .md.")
    d.add_argument("spec", metavar="DASHBOARD.yaml", help="the dashboard file: which panels, "
                   "grouped by which params (see dashboards/ and `ablate config keys panels`)")
    d.add_argument("--study", help="study name (default: `study:` in the dashboard file)")
    d.add_argument("--out", help="HTML file to write (default: $ABLATE_HOME/dashboards/"
                   "<study>-<dashboard>.html)")
    d.add_argument("--no-log", action="store_true", help="do not log it to MLflow")
    _common(d)


def _compare(a) -> int:
    from rich.console import Console

    from ablate.errors import ConfigError
    from ablate.reporting.collect import load_study, parse_by
    from ablate.reporting.compare import compare
    from ablate.reporting.compare_render import FORMATS, render, to_csv, to_markdown

    if a.format not in FORMATS:  # before any storage is read
        raise ConfigError("--format", a.format, ", ".join(FORMATS), "unknown format")
    data = load_study(a.study, storage=a.storage, tracking_uri=a.tracking_uri, by=parse_by(a.by),
                      revision=a.revision)
    c = compare(data, a.metric, a.baseline)
    out = render(c, a.format)
    if a.format == "table":
        Console().print(out if c.rows else f"study {a.study}: no completed run yet")
    else:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    from ablate.reporting import verdicts as v

    verdicts = v.judge_all(data) if a.metric is None else []
    if verdicts and a.format == "table":
        Console().print(v.to_rich(verdicts, data.metric))
    elif verdicts and a.format == "markdown":
        sys.stdout.write("\n" + v.to_markdown(verdicts, data.metric))
    if a.log and data.parent_run_id and c.rows:
        data.client.log_text(data.parent_run_id, to_csv(c), "summary/arms.csv")
        data.client.log_text(data.parent_run_id, to_markdown(c), "summary/arms.md")
        v.log_verdicts(data.client, data.parent_run_id, verdicts, data.metric, to_markdown(c))
    return 0


def _dashboard(a) -> int:
    from ablate.reporting.collect import parse_by
    from ablate.reporting.dashboard import build

    r = build(a.spec, study=a.study, by=parse_by(a.by), storage=a.storage,
              tracking_uri=a.tracking_uri, out=a.out, log=not a.no_log, metric=a.metric,
              revision=a.revision)
    print(f"dashboard: {r.path}  ({len(r.panels)} panels, study {r.study})")
    if r.artifact:
        print(f"MLflow: artifact {r.artifact} of parent run {r.parent_run_id}.  Open it with: ablate ui")
    return 0


def run(a) -> int:
    from ablate.paths import check_home

    check_home()  # an empty or odd ABLATE_HOME is named, not read as the working directory
    return {"compare": _compare, "dashboard": _dashboard}[a.command](a)
