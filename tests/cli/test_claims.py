"""`ablate claims` end to end: two tiny claim files, one command, one report with a verdict per
expectation (the second claim's with its budgets' trend and each arm's tuned rate), in
markdown, HTML and MLflow; quiet and offline like `ablate sweep`."""

import os
import subprocess
import sys
import textwrap

from tests.conftest import TINY
from tests.mlflow_helpers import store

CLAIM = """\
# a tiny claim for the test
study: {study}
base:
  trainer: {trainer}
{extra}space:
  arm:
    dense: {{model.ffn: dense}}
    moe: {{model.ffn: moe, model.moe.n_experts: 4, model.moe.top_k: 1}}
objective: {{metric: val/loss, direction: minimize}}
repeats: 2
expect:
  - claim: {claim}
    source: a test
    better: moe
    than: dense
"""

# the second claim measures budgets inside its runs and tunes each arm's rate first
TRAINER = {"first": "{max_steps: 4}", "second": "{max_steps: 12, budgets: [4, 8]}"}
EXTRA = {"second": """\
  optim: {warmup_steps: 1, schedule: wsd}
tune: {space: {optim.lr: [1.0e-3, 1.0e-2]}, fraction: 0.5}
"""}


def test_claims_run_and_report(ablate_home, tmp_path):
    claims = tmp_path / "claims"
    claims.mkdir()
    for name in ("first", "second"):
        (claims / f"{name}.yaml").write_text(textwrap.dedent(CLAIM.format(
            study=f"claim-{name}", claim=f"{name} claim", trainer=TRAINER[name],
            extra=EXTRA.get(name, ""))))
    # what a user's shell has: none of the variables the test suite sets for itself
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_DISABLE_PROGRESS_BARS")}
    env["ABLATE_HOME"] = str(ablate_home)
    over = [o for o in TINY if not o.startswith("trainer.max_steps")]
    proc = subprocess.run([sys.executable, "-m", "ablate", "claims", "--dir", str(claims), *over],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "What ablate reproduces" in out
    for name in ("first claim", "second claim"):
        assert name in out
    assert any(v in out for v in ("reproduced", "contradicted", "inconclusive"))
    # the report's files (overrides add a suffix to its name and each study's) and its MLflow run
    (md,) = (ablate_home / "claims").glob("claims*.md")
    text = md.read_text()
    assert "first claim" in text and "across budgets" in text and "tuned" in text
    (first_row,) = [ln for ln in text.splitlines() if ln.startswith("| first claim")]
    (second_row,) = [ln for ln in text.splitlines() if ln.startswith("| second claim")]
    assert first_row.split(" | ")[5:7] == ["–", "–"], first_row  # no budgets, no tuning
    across, tuned = second_row.split(" | ")[5:7]
    assert "per doubling" in across and "backtest needs at least 4" in across, second_row
    assert tuned.startswith("moe: optim.lr=") and "; dense: optim.lr=" in tuned, second_row
    assert any((ablate_home / "claims").glob("*.html"))
    client = store(ablate_home)
    exp = client.get_experiment_by_name("ablate-claims")
    assert exp is not None and client.search_runs([exp.experiment_id])
    # each claim is a study of its own: 2 points x 2 seeds (the second: and 2 x 2 tuning runs)
    for name in ("first", "second"):
        (e,) = [x for x in client.search_experiments() if x.name.startswith(f"claim-{name}")]
        runs = client.search_runs([e.experiment_id], filter_string="tags.`ablate.repeat` != ''")
        main = [r for r in runs if r.data.tags.get("ablate.stage") != "tune"]
        assert len(main) == 4 and len(runs) - len(main) == (4 if name == "second" else 0), name
    # quiet: no `datasets` progress bars (a "Downloading data" line on an offline corpus)
    assert "Downloading data" not in proc.stderr and "Generating train split" not in proc.stderr
    first = md.read_text()
    # the re-run trains nothing (off a terminal: "0 points to train" per claim) and reports the same
    again = subprocess.run([sys.executable, "-m", "ablate", "claims", "--dir", str(claims), *over],
                           capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("0 points to train") == 2 and "started" not in again.stderr
    assert md.read_text() == first
