"""Presets train end to end, and a DeepSeek-V3-style router is YAML, not Python: sigmoid
scores + group-limited selection + the aux-loss-free bias + a routed scale, as a sweep arm."""

from __future__ import annotations

import yaml

from ablate.cli import main
from tests.mlflow_helpers import all_runs


def test_deepseek_v3_preset_trains_end_to_end(ablate_home, tiny):
    # tiny: 2 layers; V3's preset keeps the first layer dense, so one MoE layer remains
    assert main(["train", "model.ffn=moe", "model.moe.preset=deepseek_v3", *tiny]) == 0
    (run,) = all_runs(ablate_home)
    p = run.data.params
    assert p["model.moe.preset"] == "deepseek_v3" and p["model.moe.router.name"] == "sigmoid"
    assert p["model.moe.router.select"] == "group_limited" and p["model.moe.router.scale"] == "2.5"
    assert p["model.moe.router.balance"] == "bias" and p["model.moe.first_dense"] == "1"
    assert run.data.metrics["moe/l0/bias_norm"] > 0  # the bias moved: balancing ran
    assert "val/loss" in run.data.metrics and run.info.status == "FINISHED"


def test_a_v3_style_arm_is_written_in_a_sweep_file(ablate_home, tiny, tmp_path):
    v3 = {"model.ffn": "moe", "model.moe.n_experts": 8, "model.moe.top_k": 2,
          "model.moe.router": {"name": "sigmoid", "select": "group_limited", "n_groups": 4,
                               "topk_groups": 2, "group_score": "top2sum", "balance": "bias",
                               "scale": 2.5}}
    spec = {"study": "v3arm", "n_trials": 2,
            "space": {"arm": {"mixtral": {"model.ffn": "moe", "model.moe.preset": "mixtral"},
                              "v3-style": v3}}}
    path = tmp_path / "v3arm.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), *tiny]) == 0
    runs = {r.data.params.get("model.moe.router.name"): r for r in all_runs(ablate_home)
            if "mlflow.parentRunId" in r.data.tags}
    assert runs["sigmoid"].data.params["model.moe.router.group_score"] == "top2sum"
    assert runs["topk_softmax"].data.params["model.moe.preset"] == "mixtral"
