"""Every shipped dashboard loads and validates; bad specs fail with one line naming the key."""

from pathlib import Path

import pytest
import yaml

from ablate.errors import ConfigError
from ablate.reporting.dashboard_spec import load_spec, parse_spec
from ablate.reporting.panels import PANELS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.yaml"))
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_shipped_dashboard_validates(path):
    spec = load_spec(path)
    assert spec.panels and spec.title
    assert all(p.kind in PANELS for p in spec.panels)


def test_one_dashboard_per_study_and_an_overview_with_every_panel():
    studies = {yaml.safe_load(p.read_text())["study"] for p in SWEEPS}
    by_study = {load_spec(p).study: p.name for p in DASHBOARDS if load_spec(p).study}
    assert studies <= set(by_study), f"no dashboard for {studies - set(by_study)}"
    overview = load_spec(ROOT / "dashboards" / "moe_overview.yaml")
    assert overview.study is None  # works for any study: --study NAME
    assert {p.kind for p in overview.panels} == set(PANELS.names())


@pytest.mark.parametrize("raw, key", [
    ({"panels": ["curves"], "colour": "red"}, "colour"),
    ({"panels": []}, "panels"),
    ({"title": "x"}, "panels"),
    ({"panels": ["heatmapz"]}, "panels[0].kind"),
    ({"panels": ["curves", {"metric": "val/loss"}]}, "panels[1].kind"),
    ({"panels": [{"kind": "curves", "metrc": "val/loss"}]}, "panels[0].metrc"),
    ({"panels": [{"kind": "curves", "band": "yes"}]}, "panels[0].band"),
    ({"panels": [{"kind": "pareto", "x": 3}]}, "panels[0].x"),
    ({"panels": [{"kind": "expert_load", "max_arms": 2.5}]}, "panels[0].max_arms"),
    ({"panels": [{"kind": "runs", "title": ["a"]}]}, "panels[0].title"),
    ({"panels": [7]}, "panels[0]"),
    ({"panels": ["runs"], "by": 3}, "by"),
    ({"panels": ["runs"], "study": "a b"}, "study"),
])
def test_bad_spec_names_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        parse_spec(raw)
    assert e.value.key == key
    assert "\n" not in str(e.value)


def test_spec_options_and_defaults():
    spec = parse_spec({"by": "model.moe.top_k", "panels": [
        "final", {"kind": "pareto", "x": "params_active", "title": "cost"}]})
    assert spec.by == ["model.moe.top_k"]
    assert spec.panels[1].options.x == ["params_active"] and spec.panels[1].title == "cost"
    assert spec.panels[0].options.metric is None


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_spec(tmp_path / "nope.yaml")
    assert e.value.key == "dashboard"
