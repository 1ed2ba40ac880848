"""`runs`: a table of every run: trial, repeat, seed, state, arm, MLflow run, final metrics."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from ablate.reporting.panels import PANELS, Html, Note


@dataclass
class RunsConfig:
    metrics: list = field(default_factory=lambda: ["val/loss", "val/ppl", "params_active",
                                                   "flops_per_token", "perf/tokens_per_s"])


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def table(header: list[str], rows: list[list[str]], numeric_from: int = 1, cls: str = "runs",
          titles: list[str] | None = None) -> Html:
    e = html.escape
    head = "".join(f'<th class="{"num" if j >= numeric_from else ""}">{e(h)}</th>'
                   for j, h in enumerate(header))
    body = []
    for i, row in enumerate(rows):
        tds = "".join(f'<td class="{"num" if j >= numeric_from else ""}">{e(c)}</td>'
                      for j, c in enumerate(row))
        title = f' title="{e(titles[i])}"' if titles and titles[i] else ""
        body.append(f"<tr{title}>{tds}</tr>")
    return Html(f'<table class="{cls}"><thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table>')


@PANELS.register("runs", RunsConfig, title="runs",
                 description="Every (trial, repeat) of the study with its MLflow run; hover a "
                 "failed row for the reason.")
def runs(cfg: RunsConfig, ctx):
    rows = sorted(ctx.data.rows, key=lambda r: (r.trial, r.repeat))
    if not rows:
        return [Note("the study has no trials yet")]
    header = ["trial", "repeat", "seed", "state", "arm", "MLflow run", "run id", *cfg.metrics]
    cells = [[str(r.trial), str(r.repeat), fmt(r.seed), r.state, r.arm, r.run_name or "",
              (r.run_id or "")[:12], *(fmt(r.value(m)) for m in cfg.metrics)] for r in rows]
    return [table(header, cells, numeric_from=7, titles=[r.fail_reason or "" for r in rows])]
