"""`summary`: the `ablate compare` table: arms, mean ± 95% CI, difference to the baseline
with a paired test's p-value, sizes, throughput; and a verdict for each expectation of the
sweep file (`expect:`)."""

from __future__ import annotations

import html
from dataclasses import dataclass

from ablate.reporting.panels import PANELS, Html, Note
from ablate.reporting.panels.runs import table


@dataclass
class SummaryConfig:
    metric: str | None = None  # default: the dashboard's metric
    baseline: str | None = None  # default: the first arm of the sweep file


@PANELS.register("summary", SummaryConfig, title="arms: {metric} mean ± 95% CI vs baseline",
                 description="")
def summary(cfg: SummaryConfig, ctx):
    from ablate.reporting.compare import compare
    from ablate.reporting.compare_render import caption, cells, columns

    c = compare(ctx.data, cfg.metric or ctx.metric, cfg.baseline)
    if not c.rows:
        return [Note("no arm has a completed run yet")]
    rows = cells(c)
    for r, row in zip(c.rows, rows):
        if r.arm == c.baseline:
            row[0] += " (baseline)"
    out = [table(columns(c), rows, numeric_from=1, cls="runs summary"),
           Html(f'<p class="caption">{html.escape(caption(c))}</p>')]
    from ablate.reporting.verdicts import judge_all

    verdicts = judge_all(ctx.data)  # the sweep file's `expect:`: a verdict per line
    if verdicts:
        out.append(table(["expectation", "Δ (arm − other) ± 95% CI", "n", "verdict", ""],
                         [[v.expectation.text(ctx.metric), v.delta,
                           str(v.test.n), v.verdict, v.note]
                          for v in verdicts], numeric_from=1, cls="runs verdicts"))
    return out
