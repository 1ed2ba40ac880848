"""The claims report: for each study of `sweeps/claims/`, each expectation with its source,
what was expected, what was measured at the largest budget (Δ ± 95% CI over paired seeds) and
the verdict, then what the budgets inside the runs say (the trend of Δ per doubling, the
crossover and its backtest: `ablate.reporting.scaling`), the learning rate each arm was tuned
to (`tune:`), and the compute the study took. Written as markdown and as one self-contained
HTML page, and logged to MLflow (experiment `ablate-claims`, one run per report)."""

from __future__ import annotations

import datetime as _dt
import html
import json
from dataclasses import dataclass
from pathlib import Path

from ablate import paths
from ablate.reporting.verdicts import Verdict
from ablate.tracking.tags import KIND, standard_tags


@dataclass
class ClaimRow:
    study: str
    file: str
    verdict: Verdict | None  # None: the study has no completed verdict (see note)
    minutes: float  # the sum of its trials' wall times (the compute it took)
    complete: str  # "9/9 points" of the study
    note: str = ""
    across: str = ""  # the trend across budgets, crossover and backtest (one line)
    tuned: str = ""  # "arm: key=value" per arm of the expectation, from the tuning stage


def claim_rows(study: str, file: str, data, minutes: float, complete: str) -> list[ClaimRow]:
    """One row per expectation of a finished claim study (`data`: its StudyData)."""
    from ablate.reporting.budgets import budget_view
    from ablate.reporting.tuning import tuning_view
    from ablate.reporting.verdicts import judge_all

    view = budget_view(data)
    across = {view.listed.index(e.expectation): e.line for e in view.expectations} if view else {}
    tuning = tuning_view(data)
    rows = []
    for i, v in enumerate(judge_all(data)):
        arms = (v.expectation.arm, v.expectation.other)
        tuned = "; ".join(f"{a}: {tuning.chosen[a]}" for a in arms
                          if tuning is not None and a in tuning.chosen)
        rows.append(ClaimRow(study, file, v, minutes, complete, across=across.get(i, ""),
                             tuned=tuned))
    return rows


def study_minutes(study, revision_of=lambda t: True) -> float:
    return sum(t.duration.total_seconds() for t in study.get_trials(deepcopy=False)
               if t.duration is not None and revision_of(t)) / 60


def rows_md(rows: list[ClaimRow], metric_of) -> str:
    head = ("| claim | source | expected | measured Δ ± 95% CI (n), largest budget | verdict | "
            "across budgets | tuned | minutes |\n|---|---|---|---|---|---|---|---|\n")
    body = []
    for r in rows:
        v = r.verdict
        if v is None:
            body.append(f"| {r.study} | | | {r.note} | not run | | | {r.minutes:.1f} |")
            continue
        e = v.expectation
        measured = f"{v.delta} (n={v.test.n})" + (f"; {v.note}" if v.note else "")
        body.append(f"| {e.claim or r.study} | {e.source} | {e.text(metric_of(r))} | {measured} | "
                    f"**{v.verdict}** | {r.across or '–'} | {r.tuned or '–'} | {r.minutes:.1f} |")
    return head + "\n".join(body) + "\n"


def counts(rows: list[ClaimRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        key = r.verdict.verdict if r.verdict else "not run"
        out[key] = out.get(key, 0) + 1
    return out


def to_markdown(rows: list[ClaimRow], metric_of, title: str) -> str:
    total = sum({r.study: r.minutes for r in rows}.values())
    summary = ", ".join(f"{n} {k}" for k, n in counts(rows).items())
    return (f"# {title}\n\n{summary}; {total:.0f} minutes of training in all "
            f"(sum of trial wall times).\n\n" + rows_md(rows, metric_of))


def to_html(markdown_table: str, title: str) -> str:
    """The report as one offline HTML page (a plain table: it opens anywhere)."""
    lines = [ln for ln in markdown_table.splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines
            if not ln.startswith("|---")]
    e = html.escape
    color = {"reproduced": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#9a6700"}

    def cell(c: str) -> str:
        text = c.replace("**", "")
        style = f' style="color:{color[text]};font-weight:600"' if text in color else ""
        return f"<td{style}>{e(text)}</td>"

    head = "".join(f"<th>{e(c)}</th>" for c in rows[0]) if rows else ""
    body = "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in rows[1:])
    intro = "".join(f"<p>{e(ln)}</p>" for ln in markdown_table.splitlines()
                    if ln and not ln.startswith(("|", "#")))
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1400px}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
            "text-align:left;vertical-align:top}th{background:#f4f4f4}</style></head><body>"
            f"<h1>{e(title)}</h1>{intro}<table><thead><tr>{head}</tr></thead><tbody>{body}"
            f"</tbody></table><p>ablate claims &middot; generated {now}</p></body></html>")


def write_and_log(rows: list[ClaimRow], metric_of, title: str, name: str,
                  tracking_uri: str) -> tuple[Path, Path, str | None]:
    """-> (markdown path, html path, MLflow run id)."""
    from ablate.tracking import runs, store

    md = to_markdown(rows, metric_of, title)
    out = paths.home() / "claims"
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / f"{name}.md", out / f"{name}.html"
    md_path.write_text(md)
    html_path.write_text(to_html(md, title))
    client = store.client(tracking_uri)
    exp = store.ensure_experiment(client, "ablate-claims")
    run_id = runs.create_run(client, exp, name, standard_tags({KIND: "claims"}))
    for k, n in counts(rows).items():
        client.log_metric(run_id, f"claims/{k.replace(' ', '_')}", n)
    client.log_text(run_id, md, "claims.md")
    client.log_text(run_id, html_path.read_text(), "claims.html")
    client.log_text(run_id,
                    json.dumps([{"study": r.study, "minutes": r.minutes, "complete": r.complete,
                                 "across_budgets": r.across, "tuned": r.tuned,
                                 **(r.verdict.as_dict() if r.verdict else {"note": r.note})}
                                for r in rows], indent=1), "claims.json")
    client.set_tag(run_id, "mlflow.note.content", md)
    runs.end_run(client, run_id, "FINISHED")
    return md_path, html_path, run_id
