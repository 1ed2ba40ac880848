"""compare + dashboard on a tiny real study: 2 arms (dense, moe-E4) x 2 seeds."""

import csv
import io
import json
import re

import pytest

from ablate.reporting.collect import load_study
from ablate.reporting.compare import compare
from ablate.reporting.dashboard import build, load_spec
from ablate.reporting.panels import Note
from ablate.reporting.stats import mean_ci
from tests.mlflow_helpers import all_runs, store
from tests.reporting import ROOT_DASHBOARDS, STUDY, ablate, tiny_study_home


@pytest.fixture(scope="module")
def home():
    return tiny_study_home()


@pytest.fixture(autouse=True)
def _home_env(home, monkeypatch):
    monkeypatch.setenv("ABLATE_HOME", str(home))


def test_collect_one_row_per_trial_and_repeat(home):
    data = load_study(STUDY)
    assert len(data.rows) == 4 and {r.state for r in data.rows} == {"COMPLETE"}
    assert {(r.arm, r.seed) for r in data.rows} == {("dense", 0), ("dense", 1), ("moe-E4", 0),
                                                    ("moe-E4", 1)}
    children = {r.info.run_id: r for r in all_runs(home) if "mlflow.parentRunId" in r.data.tags}
    assert {r.run_id for r in data.rows} == set(children)
    for r in data.rows:
        assert r.metrics["val/loss"] == children[r.run_id].data.metrics["val/loss"]
        assert r.repeat == int(children[r.run_id].data.tags["ablate.repeat"])
    assert data.sweep_order() == ["dense", "moe-E4"]
    h = data.history(data.rows[0].run_id, "val/loss")
    assert [s for s, _ in h] == [3, 6] and h[-1][1] == data.rows[0].metrics["val/loss"]


def test_compare_matches_the_runs(home):
    runs = [r for r in all_runs(home) if "mlflow.parentRunId" in r.data.tags]
    vals = {arm: {int(r.data.params["trainer.seed"]): r.data.metrics["val/loss"]
                  for r in runs if (r.data.params["model.ffn"] == "dense") == (arm == "dense")}
            for arm in ("dense", "moe-E4")}
    c = compare(load_study(STUDY))
    assert c.baseline == "dense"  # first arm of the sweep file
    row = {r.arm: r for r in c.rows}
    for arm in ("dense", "moe-E4"):
        hand = mean_ci(list(vals[arm].values()))
        assert row[arm].summary.mean == pytest.approx(hand.mean)
        assert row[arm].summary.half == pytest.approx(hand.half)
    t = row["moe-E4"].test
    assert t.test == "paired-t" and t.n == 2
    assert t.diff == pytest.approx(sum(vals["moe-E4"][s] - vals["dense"][s] for s in (0, 1)) / 2)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert t.p == pytest.approx(scipy_stats.ttest_rel([vals["moe-E4"][s] for s in (0, 1)],
                                                      [vals["dense"][s] for s in (0, 1)]).pvalue)


def test_compare_cli_formats(capsys, home):
    assert ablate("compare", "--study", STUDY, "--log") == 0
    out = capsys.readouterr().out
    assert "dense" in out and "moe-E4" in out and "±" in out and "baseline" in out
    parent = load_study(STUDY).parent_run_id
    assert {"summary/arms.csv", "summary/arms.md"} <= {
        a.path for a in store(home).list_artifacts(parent, "summary")}
    assert ablate("compare", "--study", STUDY, "--format", "json", "--baseline", "moe-E4") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["baseline"] == "moe-E4" and {a["arm"] for a in doc["arms"]} == {"dense", "moe-E4"}
    assert all(a["n"] == 2 and a["ci95_half"] > 0 for a in doc["arms"])
    assert ablate("compare", "--study", STUDY, "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["arm"] for r in rows] and all(float(r["tokens_per_s"]) > 0 for r in rows)
    assert ablate("compare", "--study", STUDY, "--format", "markdown", "--by", "model.ffn") == 0
    md = capsys.readouterr().out
    title, _, table = md.partition("\n\n")
    assert title == f"study {STUDY}, revision 1 (newest)", title  # every table names its revision
    assert table.startswith("| arm |") and "ffn=dense" in md and "ffn=moe" in md


@pytest.mark.parametrize("argv, key", [
    (["compare", "--study", "nope"], "--study"),
    (["compare", "--study", STUDY, "--by", "model.nonsense"], "--by"),
    (["compare", "--study", STUDY, "--baseline", "moe-E99"], "--baseline"),
    (["compare", "--study", STUDY, "--format", "xml"], "--format"),
    (["compare", "--study", STUDY, "--metric", "val/nope"], "--metric"),
    (["dashboard", "dashboards/moe_overview.yaml", "--study", "nope"], "--study"),
    (["dashboard", "dashboards/nope.yaml", "--study", STUDY], "dashboard"),
])
def test_errors_are_one_line_exit_2(argv, key, capsys, home):
    argv = [str(ROOT_DASHBOARDS.parent / a) if a.startswith("dashboards/") else a for a in argv]
    assert ablate(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {key}=")
    assert not (home / "optuna" / "nope.journal").exists()  # nothing created by a lookup


def _sections(html: str) -> dict[str, str]:
    parts = re.split(r'<section class="panel" id="panel-\d+" data-kind="([a-z_]+)">', html)
    return dict(zip(parts[1::2], parts[2::2]))


def test_dashboard_renders_every_panel_and_logs_to_mlflow(home, tmp_path, capsys):
    out = tmp_path / "overview.html"
    assert ablate("dashboard", str(ROOT_DASHBOARDS / "moe_overview.yaml"), "--study", STUDY,
                  "--out", str(out)) == 0
    assert "dashboards/moe_overview.html" in capsys.readouterr().out
    html = out.read_text()
    sections = _sections(html)
    assert set(sections) == {p.kind
                             for p in load_spec(ROOT_DASHBOARDS / "moe_overview.yaml").panels}
    for kind, body in sections.items():
        assert "panel failed" not in body, kind
        if kind in ("runs", "summary"):
            assert "<table" in body, kind
        elif kind == "budgets":  # the tiny study measured no budgets: said, not drawn
            assert "no completed run logged a budget curve" in body
        elif kind == "tuning":  # nor tuned a rate
            assert "no tuning stage" in body
        else:
            assert 'class="plotly-graph-div"' in body, kind
    for key in ("router_grad_norm", "routing_churn"):  # the router-health panel
        assert key in sections["routing"], key
    # self-contained: plotly.js embedded once, nothing fetched from the network
    assert len(re.findall(r"\* plotly\.js v\d", html)) == 1 and len(html) > 3_000_000
    assert not re.search(r"<script[^>]+src=", html) and "cdn.plot.ly/plotly" not in html
    # the parent run carries the dashboard and the summary table
    data = load_study(STUDY)
    client = store(home)
    listed = {a.path for a in client.list_artifacts(data.parent_run_id, "dashboards")}
    listed |= {a.path for a in client.list_artifacts(data.parent_run_id, "summary")}
    assert {"dashboards/moe_overview.html", "summary/arms.csv", "summary/arms.md"} <= listed
    note = client.get_run(data.parent_run_id).data.tags["mlflow.note.content"]
    assert "moe-E4" in note and "dense" in note
    # every child run carries its heatmap (MoE arms)
    for r in data.rows:
        arts = {a.path for a in client.list_artifacts(r.run_id, "routing")}
        assert ("routing/expert_load.png" in arts) == (r.arm == "moe-E4")


@pytest.mark.parametrize("path", sorted(ROOT_DASHBOARDS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_dashboard_renders_on_a_real_study(path, home):
    from ablate.reporting.collect import parse_by
    from ablate.reporting.dashboard import render_panels

    spec = load_spec(path)
    by = spec.by
    if by and by != ["arm"]:  # the tiny study has no granularity sweep: group by a logged key
        by = parse_by(["model.ffn"])
    panels = render_panels(spec, load_study(STUDY, by=by))
    assert len(panels) == len(spec.panels)
    for p in panels:
        notes = [b for b in p["blocks"] if isinstance(b, Note)]
        assert not any(n.startswith("panel failed") for n in notes), (p["kind"], notes)


def test_no_log_and_a_study_without_repeats_in_a_note(home, tmp_path):
    r = build(ROOT_DASHBOARDS / "quickstart.yaml", study=STUDY, out=tmp_path / "q.html", log=False)
    assert r.artifact is None and r.path.is_file() and r.panels[0] == "summary"


def test_load_over_training_reads_a_per_step_history_when_runs_have_one(home):
    """With routing/expert_load_history.json (layer x step x expert) each layer gets an
    expert x step heatmap; without it, the logged moe/l{i}/max_load per layer."""
    from ablate.reporting.panels import PANELS, make_context
    from ablate.reporting.panels.load_over_training import HISTORY_ARTIFACT, LoadOverTrainingConfig

    data = load_study(STUDY)
    render = PANELS.get("load_over_training").render
    (fig,) = render(LoadOverTrainingConfig(), make_context(data))
    assert len(fig.data) == 2  # real runs log the history: an expert x step heatmap per layer

    real = data.artifact_json
    data.artifact_json = lambda run_id, path: (None if path == HISTORY_ARTIFACT
                                               else real(run_id, path))
    (fig,) = render(LoadOverTrainingConfig(), make_context(data))
    assert [t.y for t in fig.data] == [("L0", "L1")]  # without it: max_load, layers x steps

    doc = {"layers": [0, 1], "steps": [2, 4, 6],
           "load_fraction": [[[0.25, 0.25, 0.25, 0.25]] * 3, [[0.7, 0.1, 0.1, 0.1]] * 3]}
    real = data.artifact_json
    data.artifact_json = lambda run_id, path: (doc if path == HISTORY_ARTIFACT
                                               else real(run_id, path))
    (fig,) = render(LoadOverTrainingConfig(), make_context(data))
    assert len(fig.data) == 2  # a heatmap per layer
    assert fig.data[1].z[0] == pytest.approx((2.8, 2.8, 2.8))  # expert 0 of layer 1: 0.7 x E
