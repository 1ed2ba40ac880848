"""`ablate compare`: one row per arm of a study, mean ± 95% CI, the verdicts; for a study whose
runs measured several budgets (`trainer.budgets`), each arm at each budget, each expectation's
Δ and verdict at each budget, its trend and extrapolated crossover with the backtest."""

from __future__ import annotations

import sys

from ablate.cli.common import add_study_read_args, results_console


def add_parser(sub) -> None:
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
    c.add_argument("--axis", default="tokens", help="budgets compared at equal tokens "
                   "(default), flops (training FLOPs: tokens x flops_per_token) or time (tokens / "
                   "the run's tokens/s); read off each run's curve, never extrapolated")
    c.add_argument("--log", action="store_true", help="also log summary/arms.{csv,md} (and "
                   "budgets.json) to the study's MLflow parent run")
    add_study_read_args(c)


def run(a) -> int:

    from ablate.errors import ConfigError
    from ablate.paths import check_home
    from ablate.reporting import budgets as b
    from ablate.reporting.collect import load_study, parse_by
    from ablate.reporting.compare import compare, use_comparable_metric
    from ablate.reporting.compare_render import FORMATS, render, to_csv, to_json, to_markdown
    from ablate.reporting.tuning import to_markdown as tuning_md
    from ablate.reporting.tuning import to_rich as to_rich_tuning
    from ablate.reporting.tuning import tuning_view

    check_home()  # an empty or odd ABLATE_HOME is named, not read as the working directory
    if a.format not in FORMATS:  # before any storage is read
        raise ConfigError("--format", a.format, ", ".join(FORMATS), "unknown format")
    if a.axis not in b.AXES:
        raise ConfigError("--axis", a.axis, ", ".join(b.AXES), "unknown axis")
    data = load_study(a.study, storage=a.storage, tracking_uri=a.tracking_uri, by=parse_by(a.by),
                      revision=a.revision)
    metric, why = use_comparable_metric(data, a.metric)
    c = compare(data, metric, a.baseline)
    from ablate.reporting import verdicts as v

    verdicts = v.judge_all(data) if a.metric is None else []
    view = b.budget_view(data, c.metric, a.axis)
    tuned = tuning_view(data, c.metric)
    if a.format == "json":  # the comparison, and every expectation with its budgets and trend
        extra = {"expectations": _expectations(verdicts, view), "metric_note": why}
        if tuned is not None:
            extra["tuning"] = tuned.as_dict()
        sys.stdout.write(to_json(c, extra) + "\n")
    elif a.format == "table":
        console = results_console()
        if why:
            console.print(why)
        console.print(render(c, a.format) if c.rows else f"study {a.study}: no completed run yet")
        if tuned is not None:
            console.print(to_rich_tuning(tuned))
        if view is not None:
            console.print(b.to_rich(view))
        if verdicts:
            console.print(v.to_rich(verdicts, data.metric))
    else:
        out = render(c, a.format)
        if why and a.format == "markdown":
            out = f"_{why}_\n\n{out}"
        elif why:  # csv: the reason on stderr, the table stays machine-readable
            print(why, file=sys.stderr)
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
        if a.format == "markdown":
            sys.stdout.write(("\n" + tuning_md(tuned)) if tuned is not None else "")
            sys.stdout.write(("\n" + b.to_markdown(view)) if view is not None else "")
            sys.stdout.write(("\n" + v.to_markdown(verdicts, data.metric)) if verdicts else "")
    if a.log and data.parent_run_id and c.rows:
        data.client.log_text(data.parent_run_id, to_csv(c), "summary/arms.csv")
        data.client.log_text(data.parent_run_id, to_markdown(c), "summary/arms.md")
        v.log_verdicts(data.client, data.parent_run_id, verdicts, data.metric, to_markdown(c))
        if view is not None:
            b.log_view(data.client, data.parent_run_id, view)
    return 0


def _expectations(verdicts: list, view) -> list[dict]:
    """Each expectation's verdict (at the largest budget: the runs' own end) and, when the
    runs measured budgets, its `budgets` and `trend` (`ablate.reporting.scaling`)."""
    across = view.by_expectation() if view is not None else {}
    out = []
    for i, verdict in enumerate(verdicts):
        d = verdict.as_dict()
        extra = across.get(i, {"budgets": [], "trend": None})
        out.append({**d, **{k: extra[k] for k in ("axis", "budgets", "trend") if k in extra}})
    return out
