"""`ablate compare`'s output: a `Comparison` as a rich table (the terminal), markdown, csv
or json. The numbers come from `ablate.reporting.compare`; nothing is computed here."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from ablate.errors import ConfigError
from ablate.reporting.compare import Comparison
from ablate.reporting.stats import NAN, Summary, TestResult

FORMATS = ("table", "csv", "json", "markdown")


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
            "p_value": t.p if t else NAN, "test": t.test if t else "",
            "test_n": t.n if t and t.test else 0,
            **r.sizes,
            "tokens_per_s": r.tokens_per_s.mean if r.tokens_per_s else NAN,
            "trials": " ".join(map(str, r.trials)), "values": r.values,
            "params": r.params,
            **({"tuned": {k: r.params.get(k) for k in c.tuned}} if c.tuned else {}),
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


def to_json(c: Comparison, extra: dict[str, Any] | None = None) -> str:
    """The comparison as JSON (no NaN: null), with `extra` keys (the expectations)."""
    return json.dumps({"study": c.study, "revision": c.revision, "metric": c.metric,
                       "direction": c.direction,
                       "baseline": c.baseline, "by": c.by,
                       "excluded_runs": c.not_complete, "duplicate_runs": c.duplicates,
                       "arms": _json_safe(records(c)), **_json_safe(extra or {})}, indent=2,
                      allow_nan=False)


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    recs = records(c)
    fields = [k for k in (recs[0] if recs else {"arm": 0}) if k not in ("values", "params")]
    w = csv.DictWriter(buf, fieldnames=fields + ["values", "params"], lineterminator="\n")
    w.writeheader()
    for rec in recs:
        row = {k: ("" if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in rec.items()}
        row["values"] = " ".join(f"{v:.6g}" for v in rec["values"])
        row["params"] = " ".join(f"{k}={v}" for k, v in rec["params"].items())
        w.writerow(row)
    return buf.getvalue()


def columns(c: Comparison, compact: bool = False) -> list[str]:
    tuned = ["tuned"] if c.tuned else []  # each arm's value chosen by its tuning stage
    if compact:  # the terminal
        return ["arm", *tuned, "n", c.metric, f"Δ vs {c.baseline}", "p", "test",
                "active", "total", "tokens/s"]
    return ["arm", *tuned, "n", f"{c.metric} mean ± 95% CI", f"Δ vs {c.baseline} ± 95% CI", "p",
            "test", "params_active", "params_total", "flops/token", "tokens/s"]


def cells(c: Comparison, compact: bool = False) -> list[list[str]]:
    rows = _cells(c, compact)
    if c.tuned:
        rows = [[row[0], c.tuned_label(r), *row[1:]] for r, row in zip(c.rows, rows)]
    return rows


def _cells(c: Comparison, compact: bool) -> list[list[str]]:
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
        text += (" Excluded (not COMPLETE): "
                 + ", ".join(f"{a}: {n}" for a, n in c.not_complete.items()) + ".")
    if c.duplicates:
        text += (" Runs of a configuration and seed already counted (counted once): "
                 + ", ".join(f"{a}: {n}" for a, n in c.duplicates.items()) + ".")
    return text


def to_markdown(c: Comparison) -> str:
    cols = columns(c)
    lines = [f"study {c.study}, {c.revision}", "",
             "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in cells(c):
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in row) + " |")
    return "\n".join(lines) + "\n\n" + caption(c) + "\n"


def to_rich(c: Comparison):
    from rich import box
    from rich.table import Table

    title = (f"study {c.study}, {c.revision}: {c.metric} by arm"
             + (f" (grouped by {', '.join(c.by)})" if c.by else ""))
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
        style = ("bold green" if i == 0 and len(c.rows) > 1
                 else ("dim" if r.arm == c.baseline else None))
        table.add_row(*(row[j] for j in keep), style=style)
    return table


def render(c: Comparison, fmt: str):
    """A rich Table for `table`, else a string."""
    if fmt not in FORMATS:
        raise ConfigError("--format", fmt, ", ".join(FORMATS), "unknown format")
    return {"table": to_rich, "csv": to_csv, "json": to_json, "markdown": to_markdown}[fmt](c)
