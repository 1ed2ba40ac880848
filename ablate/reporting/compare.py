"""`ablate compare`: one row per arm, mean ± 95% CI over its completed runs (trials x
repeats), the difference to a baseline arm with a test's p-value, sizes and throughput.

The test: a paired t-test over seeds matched by `trainer.seed` (repeat r of every trial
runs with seed base+r, so two arms' seed-s runs share init stream and data order), when
both arms have one run per seed and at least two seeds in common; otherwise Welch's
t-test over all runs of the two arms (e.g. `--by` groups that span several trials). The
test used is named in every row.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ablate.errors import ConfigError
from ablate.reporting.collect import StudyData
from ablate.reporting.stats import NAN, Summary, TestResult, mean_ci, paired_test, welch_test

FORMATS = ("table", "csv", "json", "markdown")
SIZES = ("params_active", "params_total", "flops_per_token", "kv_cache_bytes_per_token")


@dataclass
class ArmRow:
    arm: str
    summary: Summary  # of the metric over completed runs
    values: list[float]
    seeds: list[int | None]
    trials: list[int]
    test: TestResult | None  # vs the baseline; None for the baseline itself
    sizes: dict[str, float] = field(default_factory=dict)
    tokens_per_s: Summary | None = None
    params: dict[str, Any] = field(default_factory=dict)  # trial params shared by the arm's runs


@dataclass
class Comparison:
    study: str
    metric: str
    direction: str
    baseline: str | None
    rows: list[ArmRow]
    not_complete: dict[str, int]  # arm -> runs of pruned/failed/running trials (excluded)
    by: list[str] | None = None
    duplicates: dict[str, int] = field(default_factory=dict)  # arm -> runs counted once


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else NAN


def _test(a: ArmRow, b: ArmRow) -> TestResult:
    def per_seed(row: ArmRow) -> dict[int, list[float]]:
        out: dict[int, list[float]] = {}
        for s, v in zip(row.seeds, row.values):
            if s is not None:
                out.setdefault(s, []).append(v)
        return out

    sa, sb = per_seed(a), per_seed(b)
    one_each = all(len(v) == 1 for v in [*sa.values(), *sb.values()])
    common = sorted(set(sa) & set(sb))
    if one_each and len(common) >= 2 and len(sa) == len(a.values) and len(sb) == len(b.values):
        return paired_test([sa[s][0] for s in common], [sb[s][0] for s in common])
    return welch_test(a.values, b.values)


def compare(data: StudyData, metric: str | None = None, baseline: str | None = None) -> Comparison:
    metric = metric or data.metric
    known = {k for r in data.rows for k in r.metrics}
    if known and metric not in known:  # (a study whose runs logged nothing yet: no rows)
        raise ConfigError("--metric", metric, ", ".join(sorted(k for k in known if "/l" not in k)),
                          "not logged by this study's runs")
    order = data.arms(metric)
    rows: dict[str, ArmRow] = {}
    not_complete: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    for arm in order:
        runs = [r for r in data.complete() if r.arm == arm and r.metrics.get(metric) is not None]
        runs, dropped = _one_per_config_and_seed(runs)
        if dropped:
            duplicates[arm] = dropped
        others = [r for r in data.rows if r.arm == arm and r.state != "COMPLETE"]
        if others:
            not_complete[arm] = len(others)
        if not runs:
            continue
        values = [float(r.metrics[metric]) for r in runs]
        shared = dict(runs[0].params)
        for r in runs[1:]:
            shared = {k: v for k, v in shared.items() if r.params.get(k) == v}
        rows[arm] = ArmRow(
            arm=arm, summary=mean_ci(values), values=values, seeds=[r.seed for r in runs],
            trials=sorted({r.trial for r in runs}), test=None,
            sizes={k: _mean([r.metrics.get(k, NAN) for r in runs]) for k in SIZES},
            tokens_per_s=mean_ci([r.metrics.get("perf/tokens_per_s", NAN) for r in runs]),
            params={k: v for k, v in shared.items() if k != "arm"},
        )
    if baseline is not None and baseline not in rows:
        raise ConfigError("--baseline", baseline, ", ".join(rows) or "no arm has a completed run",
                          "unknown arm")
    if baseline is None and rows:
        baseline = next(a for a in data.sweep_order() if a in rows)
    for arm, row in rows.items():
        if arm != baseline:
            row.test = _test(row, rows[baseline])
    return Comparison(data.name, metric, data.direction(metric), baseline, list(rows.values()),
                      not_complete, data.by, duplicates)


def _one_per_config_and_seed(runs: list) -> tuple[list, int]:
    """Two runs of the same configuration and seed are one sample, not two (they measure the
    same thing twice: counting both would shrink the CI for nothing). Keeps the first of
    each (the same run listed by two attempts of a trial is one run)."""
    kept, seen = [], set()
    for r in runs:
        config = {k: v for k, v in r.config.items()} or dict(r.params)
        key = (r.run_id, ) if not config else (json.dumps(config, sort_keys=True, default=str), r.seed)
        if key in seen or (r.run_id and (r.run_id,) in seen):
            continue
        seen.add(key)
        if r.run_id:
            seen.add((r.run_id,))
        kept.append(r)
    return kept, len(runs) - len(kept)


# -- rendering -----------------------------------------------------------------------------
def _num(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def _si(v: float | None) -> str:
    """1086592 -> 1.09M (the terminal table)."""
    if v is None or not math.isfinite(v):
        return "–"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def _pm(s: Summary, d: int = 4) -> str:
    if s.n == 0:
        return "–"
    if s.n > 1 and not math.isfinite(s.half):  # equal values: refused (see stats.mean_ci)
        return f"{s.mean:.{d}f} (no spread: identical runs?)"
    return f"{s.mean:.{d}f} ± {s.half:.{d}f}" if s.n > 1 else f"{s.mean:.{d}f}"


def _delta(t: TestResult | None, d: int = 4) -> str:
    if t is None:
        return "baseline"
    if not math.isfinite(t.diff):
        return "–"
    return f"{t.diff:+.{d}f} ± {t.half:.{d}f}" if math.isfinite(t.half) else f"{t.diff:+.{d}f}"


def _p(t: TestResult | None) -> str:
    if t is None or not math.isfinite(t.p):
        return "–"
    return f"{t.p:.3f}" if t.p >= 1e-3 else f"{t.p:.1e}"


def _test_name(t: TestResult | None) -> str:
    if t is None or not t.test:
        return ""
    return f"{t.test.replace('-t', '')} n={t.n}"


def records(c: Comparison) -> list[dict[str, Any]]:
    """Plain numbers per arm (the csv/json output)."""
    out = []
    for r in c.rows:
        t = r.test
        rec = {
            "arm": r.arm, "baseline": r.arm == c.baseline, "n": r.summary.n, "metric": c.metric,
            "mean": r.summary.mean, "ci95_low": r.summary.lo, "ci95_high": r.summary.hi,
            "ci95_half": r.summary.half, "std": r.summary.std,
            "delta": t.diff if t else 0.0, "delta_ci95_half": t.half if t else NAN,
            "p_value": t.p if t else NAN, "test": t.test if t else "", "test_n": t.n if t and t.test else 0,
            **r.sizes,
            "tokens_per_s": r.tokens_per_s.mean if r.tokens_per_s else NAN,
            "trials": " ".join(map(str, r.trials)), "values": r.values,
            "params": r.params,
        }
        out.append(rec)
    return out


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def to_json(c: Comparison) -> str:
    return json.dumps({"study": c.study, "metric": c.metric, "direction": c.direction,
                       "baseline": c.baseline, "by": c.by,
                       "excluded_runs": c.not_complete, "duplicate_runs": c.duplicates,
                       "arms": _json_safe(records(c))}, indent=2)


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    recs = records(c)
    fields = [k for k in (recs[0] if recs else {"arm": 0}) if k not in ("values", "params")]
    w = csv.DictWriter(buf, fieldnames=fields + ["values", "params"], lineterminator="\n")
    w.writeheader()
    for rec in recs:
        row = {k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
        row["values"] = " ".join(f"{v:.6g}" for v in rec["values"])
        row["params"] = " ".join(f"{k}={v}" for k, v in rec["params"].items())
        w.writerow(row)
    return buf.getvalue()


def columns(c: Comparison, compact: bool = False) -> list[str]:
    if compact:  # the terminal
        return ["arm", "n", c.metric, f"Δ vs {c.baseline}", "p", "test",
                "active", "total", "tokens/s"]
    return ["arm", "n", f"{c.metric} mean ± 95% CI", f"Δ vs {c.baseline} ± 95% CI", "p", "test",
            "params_active", "params_total", "flops/token", "tokens/s"]


def cells(c: Comparison, compact: bool = False) -> list[list[str]]:
    out = []
    for r in c.rows:
        tps = r.tokens_per_s.mean if r.tokens_per_s else None
        if compact:
            out.append([r.arm, str(r.summary.n), _pm(r.summary, 3), _delta(r.test, 3), _p(r.test),
                        _test_name(r.test), _si(r.sizes.get("params_active")),
                        _si(r.sizes.get("params_total")), _num(tps)])
        else:
            out.append([r.arm, str(r.summary.n), _pm(r.summary), _delta(r.test), _p(r.test),
                        _test_name(r.test), _num(r.sizes.get("params_active")),
                        _num(r.sizes.get("params_total")), _num(r.sizes.get("flops_per_token")),
                        _num(tps)])
    return out


def caption(c: Comparison) -> str:
    best = "lower" if c.direction == "minimize" else "higher"
    text = (f"{best} {c.metric} is better; ± is the 95% CI (Student's t); n = completed runs "
            "(trials x repeats). "
            "Δ = arm − baseline; p: two-sided paired t-test over seeds matched by trainer.seed "
            "(Welch's t-test where seeds cannot be matched).")
    if c.rows and max(r.summary.n for r in c.rows) < 2:
        text += (" One run per arm: no CI or p-value; set `repeats: N` in the sweep file "
                 "for N seeds per arm.")
    if c.not_complete:
        text += " Excluded (not COMPLETE): " + ", ".join(f"{a}: {n}" for a, n in c.not_complete.items()) + "."
    if c.duplicates:
        text += (" Runs of a configuration and seed already counted (counted once): "
                 + ", ".join(f"{a}: {n}" for a, n in c.duplicates.items()) + ".")
    return text


def to_markdown(c: Comparison) -> str:
    cols = columns(c)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in cells(c):
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in row) + " |")
    return "\n".join(lines) + "\n\n" + caption(c) + "\n"


def to_rich(c: Comparison):
    from rich import box
    from rich.table import Table

    title = f"study {c.study}: {c.metric} by arm" + (f" (grouped by {', '.join(c.by)})" if c.by else "")
    cap = caption(c).replace("Δ = arm − baseline", f"Δ = arm − baseline ({c.baseline})")
    table = Table(title=title, header_style="bold", caption=cap, caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cols, rows = columns(c, compact=True), cells(c, compact=True)
    tests = {r.test.test for r in c.rows if r.test and r.test.test}
    drop = {"p", "test"} if not tests else {"test"} if tests == {"paired-t"} else set()
    keep = [i for i, col in enumerate(cols) if col not in drop]
    for i in keep:
        col = "Δ" if cols[i].startswith("Δ") else cols[i]
        table.add_column(col, justify="left" if col in ("arm", "test") else "right",
                         no_wrap=col in ("arm", c.metric, "Δ"))
    for i, (r, row) in enumerate(zip(c.rows, rows)):
        style = "bold green" if i == 0 and len(c.rows) > 1 else ("dim" if r.arm == c.baseline else None)
        table.add_row(*(row[j] for j in keep), style=style)
    return table


def render(c: Comparison, fmt: str):
    """A rich Table for `table`, else a string."""
    if fmt not in FORMATS:
        raise ConfigError("--format", fmt, ", ".join(FORMATS), "unknown format")
    return {"table": to_rich, "csv": to_csv, "json": to_json, "markdown": to_markdown}[fmt](c)
