"""A verdict for each expectation of a study (`expect:` in its sweep file).

For `arm` vs `other` on a metric, d = arm - other per seed (seeds matched by trainer.seed,
each (configuration, seed) counted once), and the 95% CI of the mean of d (Student's t):
    lower    reproduced if the CI lies below 0, contradicted if above, else inconclusive
    higher   the mirror image
    better   lower for a minimized metric, higher for a maximized one
    similar  reproduced if the CI lies inside (-margin, margin), contradicted if it lies
             wholly outside it, else inconclusive
Where seeds cannot be matched, Welch's interval of the difference of means is used.
"not measured": fewer than two runs per arm, or no spread at all (refused, not guessed).
An inconclusive verdict says how many repeats a power estimate from the observed mean and
spread of d would need for the CI to settle it (`needed`), or that no effect was seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablate.reporting.compare import one_per_config_and_seed
from ablate.reporting.stats import TestResult, mean_ci, paired_test, t_quantile, welch_test
from ablate.reporting.study_data import StudyData, direction_of
from ablate.sweep.expect import Expectation, split_metric
from ablate.sweep.record import expectations
from ablate.tracking.runs import describe
from ablate.tracking.tags import CLAIM

MAX_NEEDED = 10_000
MIN_TRUSTED = 3  # pairs (or runs) below which a settled verdict carries a caveat


@dataclass
class Verdict:
    expectation: Expectation
    metric: str
    verdict: str  # reproduced | contradicted | inconclusive | not measured
    test: TestResult
    needed: int | None = None  # repeats that would settle an inconclusive one
    failed: tuple[int, int] = (0, 0)  # runs of (arm, other) that failed (e.g. diverged)
    note: str = ""

    @property
    def delta(self) -> str:
        t = self.test
        if not math.isfinite(t.diff):
            return "–"
        return f"{t.diff:+.4f} ± {t.half:.4f}" if math.isfinite(t.half) else f"{t.diff:+.4f}"

    def as_dict(self) -> dict:
        return {**self.expectation.as_dict(), "metric": self.metric, "verdict": self.verdict,
                "diff": _json(self.test.diff), "ci95_half": _json(self.test.half), "n": self.test.n,
                "test": self.test.test, "repeats_needed": self.needed,
                "failed_runs": list(self.failed),
                "note": self.note}


def _json(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _values(data: StudyData, arm: str, metric: str) -> dict[int | None, float]:
    """seed -> the arm's value of `metric` (aggregated over the curve for max:/min:/mean:)."""
    agg, name = split_metric(metric)
    rows, _ = one_per_config_and_seed([r for r in data.complete() if r.arm == arm])
    out = {}
    for r in rows:
        if agg is None:
            v = r.value(name)
        else:
            curve = [x for _, x in data.history(r.run_id, name)] if r.run_id else []
            v = ({"max": max, "min": min, "mean": lambda c: sum(c) / len(c)}[agg](curve) if curve
                 else None)
        if v is not None and math.isfinite(v):
            out[r.seed] = float(v)
    return out


def _needed(d: float, s: float, target: float) -> int | None:
    """Smallest n whose t-interval half-width t_{.975,n-1} s/sqrt(n) is below `target`."""
    if not (s > 0 and target > 0):
        return None
    for n in range(2, MAX_NEEDED):
        if t_quantile(0.975, n - 1) * s / math.sqrt(n) < target:
            return n
    return None


def judge(e: Expectation, data: StudyData) -> Verdict:
    metric = e.metric_or(data.metric)
    a, b = _values(data, e.arm, metric), _values(data, e.other, metric)
    failed = tuple(sum(r.state == "FAIL" and r.run_id is not None for r in data.rows if r.arm == x)
                   for x in (e.arm, e.other))
    common = sorted(set(a) & set(b) - {None})
    if len(common) >= 2:  # the spread of one paired difference
        t = paired_test([a[s] for s in common], [b[s] for s in common])
        spread = mean_ci([a[s] - b[s] for s in common]).std
    else:  # the spread of a difference of two single runs
        t = welch_test(list(a.values()), list(b.values()))
        sa, sb = mean_ci(list(a.values())).std, mean_ci(list(b.values())).std
        spread = (math.sqrt(sa ** 2 + sb ** 2) if math.isfinite(sa) and math.isfinite(sb)
                  else math.nan)
    if not math.isfinite(t.half):
        why = "fewer than 2 runs per arm" if min(len(a), len(b)) < 2 else "no spread between seeds"
        return Verdict(e, metric, "not measured", t, failed=failed, note=why)
    lo, hi = t.diff - t.half, t.diff + t.half
    relation = e.relation
    if relation == "better":
        _, name = split_metric(metric)
        relation = "lower" if direction_of(name, data.objectives) == "minimize" else "higher"
    if relation == "similar":
        m = e.margin
        verdict = ("reproduced" if -m < lo and hi < m else
                   "contradicted" if lo > m or hi < -m else "inconclusive")
        target = abs(m - abs(t.diff))
    else:
        sign = -1 if relation == "lower" else 1
        verdict = ("reproduced" if sign * lo > 0 and sign * hi > 0 else
                   "contradicted" if sign * lo < 0 and sign * hi < 0 else "inconclusive")
        target = abs(t.diff)
    needed = _needed(t.diff, spread, target) if verdict == "inconclusive" else None
    note = "" if verdict != "inconclusive" else (
        f"about {needed} repeats would settle it" if needed else "no effect seen at this size")
    if t.n < MIN_TRUSTED and verdict != "inconclusive":
        note = ("; ".join(filter(None, [note, f"n={t.n}: an interval from {t.n} runs rests on "
                                        "their spread alone; 3 or more repeats to trust it"])))
    return Verdict(e, metric, verdict, t, needed, failed, note)


def judge_all(data: StudyData) -> list[Verdict]:
    from ablate.sweep.expect import parse_expect

    return [judge(e, data) for e in parse_expect(expectations(data.study) or None)] \
        if data.study is not None else []


def to_markdown(verdicts: list[Verdict], metric: str) -> str:
    lines = ["| expectation | Δ (arm − other) ± 95% CI | n | verdict | |", "|---|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v.expectation.text(metric)} | {v.delta} | {v.test.n} | **{v.verdict}** "
                     f"| {v.note} |")
    return "\n".join(lines) + "\n"


def log_verdicts(client, parent_run_id: str, verdicts: list[Verdict], metric: str,
                 arms_md: str = "") -> None:
    """Tags `ablate.claim.<i>` (the verdict), `claims.json`, and the run description (unless
    a person wrote one: `ablate.tracking.runs.describe`)."""
    if not verdicts:
        return
    for i, v in enumerate(verdicts):
        client.set_tag(parent_run_id, CLAIM.format(i), v.verdict)
    client.log_dict(parent_run_id, {"verdicts": [v.as_dict() for v in verdicts]}, "claims.json")
    describe(client, parent_run_id, verdicts_md(verdicts, metric)
             + (f"\n{arms_md}" if arms_md else ""))


def verdicts_md(verdicts: list[Verdict], metric: str) -> str:
    return ("**Expectations** (`expect:` of the sweep file)\n\n" + to_markdown(verdicts, metric)
            if verdicts else "")


def to_rich(verdicts: list[Verdict], metric: str):
    from rich.table import Table

    color = {"reproduced": "green", "contradicted": "red", "inconclusive": "yellow"}
    table = Table(title="expectations", header_style="bold")
    for col in ("expectation", "Δ ± 95% CI", "n", "verdict", ""):
        table.add_column(col)
    for v in verdicts:
        c = color.get(v.verdict, "dim")
        table.add_row(v.expectation.text(metric), v.delta, str(v.test.n),
                      f"[{c}]{v.verdict}[/]", v.note)
    return table
