"""`ablate dashboard DASHBOARD.yaml --study NAME`: a study's plots as one offline HTML file,
also logged to the study's MLflow parent run."""

from __future__ import annotations

from ablate.cli.common import add_study_read_args


def add_parser(sub) -> None:
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
    add_study_read_args(d)


def run(a) -> int:
    from ablate.paths import check_home
    from ablate.reporting.collect import parse_by

    check_home()  # an empty or odd ABLATE_HOME is named, not read as the working directory
    from ablate.reporting.dashboard import build

    r = build(a.spec, study=a.study, by=parse_by(a.by), storage=a.storage,
              tracking_uri=a.tracking_uri, out=a.out, log=not a.no_log, metric=a.metric,
              revision=a.revision)
    print(f"dashboard: {r.path}  ({len(r.panels)} panels, study {r.study})")
    if r.artifact:
        print(f"MLflow: artifact {r.artifact} of parent run {r.parent_run_id}.  Open it "
              "with: ablate ui")
    return 0
