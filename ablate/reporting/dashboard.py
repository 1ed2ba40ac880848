"""`ablate dashboard SPEC.yaml --study NAME`: a dashboard file (`dashboard_spec.py`) rendered
for a study to ONE self-contained HTML page (every panel rendered, a failing panel says so
in a note; plotly.js embedded once, so the file opens offline), written under
$ABLATE_HOME/dashboards/ and logged to the study's MLflow parent run as
`dashboards/<spec>.html`, next to `summary/arms.{csv,md}`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate import paths
from ablate.errors import ConfigError
from ablate.reporting.dashboard_spec import DashboardSpec, load_spec
from ablate.reporting.panels import PANELS, Html, Note, make_context
from ablate.reporting.verdicts import judge_all, verdicts_md
from ablate.tracking.runs import describe

# -- the page --------------------------------------------------------------------------------
CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
     margin:0;background:#f4f5f7;color:#1d1f23}
header{background:#1d2733;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px 0;font-size:22px}
header .meta{font-size:13px;opacity:.85;line-height:1.6}
header .meta code{background:rgba(255,255,255,.12);padding:1px 5px;border-radius:3px}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid #dde;font-size:13px}
nav a{margin-right:14px;color:#2458a6;text-decoration:none}
main{max-width:1500px;margin:0 auto;padding:16px 20px 40px}
section.panel{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:16px 0;\
padding:12px 18px}
section.panel h2{font-size:17px;margin:4px 0 4px 0}
section.panel p.desc{font-size:13px;color:#555;margin:0 0 8px 0}
div.note{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px;font-size:13px;\
margin:8px 0}
table.runs{border-collapse:collapse;font-size:12.5px;width:100%}
table.runs th,table.runs td{border-bottom:1px solid #e3e6ea;padding:4px 8px;text-align:left;\
white-space:nowrap}
table.runs th{background:#f0f2f5;position:sticky;top:0}
table.runs td.num,table.runs th.num{text-align:right;font-variant-numeric:tabular-nums}
table.runs tbody tr:hover{background:#f5f9ff}
div.table-wrap{overflow-x:auto}
p.caption{font-size:12px;color:#666}
footer{font-size:12px;color:#777;text-align:center;padding:10px}
"""


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _title(template: str, options: Any, metric: str) -> str:
    values = _Fields({k: v for k, v in dataclasses.asdict(options).items() if v is not None})
    values.setdefault("metric", values.get("y", metric))
    try:
        return string.Formatter().vformat(template, (), values)
    except (ValueError, IndexError):
        return template


def _blocks_html(blocks: list, panel_index: int) -> str:
    parts = []
    for j, block in enumerate(blocks):
        if isinstance(block, Note):
            parts.append(f'<div class="note">{html.escape(block)}</div>')
        elif isinstance(block, Html):
            parts.append(f'<div class="table-wrap">{block}</div>')
        else:  # a plotly figure
            parts.append(block.to_html(full_html=False, include_plotlyjs=False,
                                       div_id=f"fig-{panel_index}-{j}",
                                       config={"displaylogo": False, "responsive": True}))
    return "\n".join(parts)


def render_panels(spec: DashboardSpec, data, metric: str | None = None) -> list[dict[str, Any]]:
    """Each panel as {kind, title, description, blocks}; a panel that fails says so in a note
    instead of taking the whole dashboard down."""
    ctx = make_context(data, metric or spec.metric)
    out = []
    for p in spec.panels:
        entry = PANELS.get(p.kind)
        try:
            blocks = entry.render(p.options, ctx)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - one broken panel must not hide the others
            blocks = [Note(f"panel failed: {type(e).__name__}: {e}")]
        out.append({"kind": p.kind, "title": _title(p.title or entry.title, p.options, ctx.metric),
                    "description": (p.description if p.description is not None
                                    else entry.description),
                    "blocks": blocks})
    return out


def _study_meta(data) -> str:
    counts: dict[str, int] = {}
    for t in data.study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    repeats = max((r.repeat for r in data.rows), default=0) + 1
    objectives = ", ".join(f"{o.metric} ({o.direction})" for o in data.objectives)
    e = html.escape
    trials = " ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    return (f"trials: {e(trials) or 'none'} &middot; repeats: {repeats} &middot; arms: "
            f"{len(data.sweep_order())} &middot; objective: {e(objectives)}<br>"
            f"MLflow parent run <code>{e(data.parent_run_id or '-')}</code>")


def to_html(spec: DashboardSpec, data, metric: str | None = None) -> str:
    from plotly.offline import get_plotlyjs

    panels = render_panels(spec, data, metric)
    e = html.escape
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    grouped = f" &middot; grouped by {e(', '.join(data.by))}" if data.by else ""
    nav = " ".join(f'<a href="#panel-{i}">{e(p["title"])}</a>' for i, p in enumerate(panels))
    sections = []
    for i, p in enumerate(panels):
        desc = f'<p class="desc">{e(p["description"])}</p>' if p["description"] else ""
        sections.append(f'<section class="panel" id="panel-{i}" data-kind="{e(p["kind"])}">'
                        f'<h2>{e(p["title"])}</h2>{desc}{_blocks_html(p["blocks"], i)}</section>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(spec.title)}: {e(data.name)}</title>
<style>{CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<header><h1>{e(spec.title)} &mdash; study {e(data.name)}</h1>
<div class="meta">{e(spec.description)}{'<br>' if spec.description else ''}\
{_study_meta(data)}{grouped}</div></header>
<nav>{nav}</nav>
<main>
{chr(10).join(sections)}
</main>
<footer>ablate dashboard {e(spec.name)} &middot; generated {now} &middot; \
self-contained (plotly.js embedded, works offline)</footer>
</body></html>
"""


# -- build and publish ----------------------------------------------------------------------
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
        describe(client, parent, f"**study {data.name}** (written by `ablate dashboard`; plots: "
                 f"artifact `{artifact}`)\n\n{md}\n" + verdicts_md(judge_all(data), c.metric))
    return artifact


def build(spec_path: str | Path, study: str | None = None, by: list[str] | None = None,
          storage: str | None = None, tracking_uri: str | None = None,
          out: str | Path | None = None, log: bool = True, metric: str | None = None,
          revision: str | int | None = None) -> DashboardResult:
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
