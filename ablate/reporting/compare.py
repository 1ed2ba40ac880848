"""`ablate compare`: one row per arm, mean ± 95% CI over its completed runs (trials x
repeats), the difference to a baseline arm with a test's p-value, sizes and throughput.

The test: a paired t-test over seeds matched by `trainer.seed` (repeat r of every trial
runs with seed base+r, so two arms' seed-s runs share init stream and data order), when
both arms have one run per seed and at least two seeds in common; otherwise Welch's
t-test over all runs of the two arms (e.g. `--by` groups that span several trials). The
test used is named in every row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from ablate.errors import ConfigError
from ablate.reporting.stats import NAN, Summary, TestResult, mean_ci, paired_test, welch_test
from ablate.reporting.study_data import StudyData
from ablate.tracking.naming import fmt_value

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
    tuned: tuple[str, ...] = ()  # keys each arm trained at its own chosen value (`tune:`)
    revision: str = "revision 1"  # which revision(s) the rows are

    def tuned_label(self, row: ArmRow) -> str:
        """The values chosen for `row`'s arm (`optim.lr=0.003`), "" without `tune:`."""
        return ", ".join(f"{k}={fmt_value(row.params.get(k))}" for k in self.tuned)


PER_TOKEN = ("val/loss", "val/ppl", "budget/val_loss", "budget/val_ppl")
BPB = "val/bpb"


def tokenizers(data: StudyData) -> list[str]:
    """The distinct tokenizers of the study's completed runs (`bpe-4096`, `byte`, a path)."""
    seen = []
    for r in data.complete():
        name = r.config.get("data.tokenizer", "byte")
        size = r.config.get("data.vocab_size")
        label = f"{name}-{size}" if size not in (None, "None") else name
        if label not in seen:
            seen.append(label)
    return seen


def comparable_metric(data: StudyData, asked: str | None) -> tuple[str, str | None]:
    """The metric to compare arms on, and why when it is not the one asked for (or the study's
    objective). Loss per token is not comparable across tokenizers: a token is a different
    amount of text. When the runs used several tokenizers, bits per byte of the same
    validation text is: the study's per-token objective is replaced by val/bpb (a metric named
    with --metric is kept, with the warning)."""
    metric = asked or data.metric
    names = tokenizers(data)
    if len(names) < 2 or metric not in PER_TOKEN:
        return metric, None
    why = (f"the runs used {len(names)} tokenizers ({', '.join(names)}): {metric} is per token, "
           "and a token is a different amount of text in each")
    if asked is not None or not any(BPB in r.metrics for r in data.complete()):
        return metric, f"warning: {why}; {BPB} (bits per byte) compares them"
    return BPB, (f"compared on {BPB} (bits per byte of the same validation text), not {metric}: "
                 f"{why}")


def use_comparable_metric(data: StudyData, asked: str | None) -> tuple[str, str | None]:
    """`comparable_metric`; when it replaces the study's objective, the study's first
    objective becomes that metric (minimised), so its verdicts read it too."""
    metric, why = comparable_metric(data, asked)
    if metric != data.metric and asked is None:
        first = replace(data.objectives[0], metric=metric, direction="minimize")
        data.objectives = [first, *data.objectives[1:]]
    return metric, why


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
        runs = [r for r in data.complete() if r.arm == arm and r.value(metric) is not None]
        runs, dropped = one_per_config_and_seed(runs)
        if dropped:
            duplicates[arm] = dropped
        others = [r for r in data.rows if r.arm == arm and r.state != "COMPLETE"]
        if others:
            not_complete[arm] = len(others)
        if not runs:
            continue
        values = [float(r.value(metric)) for r in runs]
        shared = dict(runs[0].params)
        for r in runs[1:]:
            shared = {k: v for k, v in shared.items() if r.params.get(k) == v}
        rows[arm] = ArmRow(
            arm=arm, summary=mean_ci(values), values=values, seeds=[r.seed for r in runs],
            trials=sorted({r.trial for r in runs}), test=None,
            sizes={k: _mean([r.value(k, NAN) for r in runs]) for k in SIZES},
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
                      not_complete, data.by, duplicates, tuple(data.tuned), data.revision)


def one_per_config_and_seed(runs: list) -> tuple[list, int]:
    """Two runs of the same configuration and seed are one sample, not two (they measure the
    same thing twice: counting both would shrink the CI for nothing). Keeps the first of
    each (the same run listed by two attempts of a trial is one run)."""
    kept, seen = [], set()
    for r in runs:
        config = {k: v for k, v in r.config.items()} or dict(r.params)
        key = ((r.run_id, ) if not config
               else (json.dumps(config, sort_keys=True, default=str), r.seed))
        if key in seen or (r.run_id and (r.run_id,) in seen):
            continue
        seen.add(key)
        if r.run_id:
            seen.add((r.run_id,))
        kept.append(r)
    return kept, len(runs) - len(kept)
