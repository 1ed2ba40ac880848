"""`ablate dashboard SPEC.yaml --study NAME`: a dashboard file (`dashboard_spec.py`) rendered
for a study to one self-contained HTML file (`dashboard_html.py`), written under
$ABLATE_HOME/dashboards/ and logged to the study's MLflow parent run as
`dashboards/<spec>.html`, next to `summary/arms.{csv,md}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablate import paths
from ablate.errors import ConfigError
from ablate.reporting.dashboard_html import to_html
from ablate.reporting.dashboard_spec import load_spec

NOTE_MARKER = "<!-- ablate:summary -->"


@dataclass
class DashboardResult:
    path: Path
    study: str
    parent_run_id: str | None
    artifact: str | None  # the artifact path in the parent run, when logged
    panels: list[str]


def publish(data, html_text: str, name: str, metric: str | None = None) -> str | None:
    """Log the dashboard and the arm summary (csv + markdown) to the study's parent run; the
    markdown also becomes the parent's MLflow description unless a person wrote one."""
    from ablate.reporting.compare import compare
    from ablate.reporting.compare_render import to_csv, to_markdown

    if not data.parent_run_id:
        return None
    client, parent = data.client, data.parent_run_id
    artifact = f"dashboards/{name}.html"
    client.log_text(parent, html_text, artifact)
    c = compare(data, metric)
    if c.rows:
        md = to_markdown(c)
        client.log_text(parent, to_csv(c), "summary/arms.csv")
        client.log_text(parent, md, "summary/arms.md")
        note = client.get_run(parent).data.tags.get("mlflow.note.content", "")
        if not note or note.startswith(NOTE_MARKER):
            from ablate.reporting.verdicts import judge_all, verdicts_md

            client.set_tag(parent, "mlflow.note.content",
                           f"{NOTE_MARKER}\n**study {data.name}** (written by `ablate dashboard`; "
                           f"plots: artifact `{artifact}`)\n\n{md}\n"
                           + verdicts_md(judge_all(data), c.metric))
    return artifact


def build(spec_path: str | Path, study: str | None = None, by: list[str] | None = None,
          storage: str | None = None, tracking_uri: str | None = None, out: str | Path | None = None,
          log: bool = True, metric: str | None = None, revision: str | int | None = None) -> DashboardResult:
    from ablate.reporting.collect import load_study

    spec = load_spec(spec_path)
    name = study or spec.study
    if not name:
        raise ConfigError("--study", None, "a study name (or `study:` in the dashboard file)",
                          "no study given")
    data = load_study(name, storage=storage, tracking_uri=tracking_uri, by=by or spec.by,
                      revision=revision)
    text = to_html(spec, data, metric)
    path = Path(out) if out else paths.home() / "dashboards" / f"{name}-{spec.name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    artifact = publish(data, text, spec.name, metric or spec.metric) if log else None
    return DashboardResult(path, name, data.parent_run_id, artifact, [p.kind for p in spec.panels])
