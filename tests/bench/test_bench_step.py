"""`ablate bench step`: both paths train the same model on the same batches to the same
weights (so the ratio compares like with like), and the CLI prints its table; no time
asserted."""

from __future__ import annotations

import copy
import json

import torch

from ablate.bench import step


def _weights_after(fn, arm: str, *args) -> dict[str, torch.Tensor]:
    cfg = step.config(arm)
    cfg.trainer.max_steps = 4
    data = step.batches(cfg, 4)
    step.bare.warmup = 1
    seen = {}
    original = step._module

    def keep(c):
        seen["m"] = original(c)
        return seen["m"]

    step._module = keep
    try:
        fn(copy.deepcopy(cfg), data, *args)
    finally:
        step._module = original
    return {k: v.detach().clone() for k, v in seen["m"].state_dict().items()}


def test_bare_loop_and_ablate_path_train_to_the_same_weights(tmp_path):
    """The reference loop is ablate's training step without Lightning: same weights after 4
    steps (dense and MoE with its bias-free router), up to float reassociation."""
    from ablate.tracking import store

    client = store.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("b", artifact_location=(tmp_path / "a").as_uri())
    torch.use_deterministic_algorithms(True)
    for arm in ("dense", "moe"):
        a = _weights_after(step.bare, arm)
        b = _weights_after(step.ablate_path, arm, client, exp)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_bench_step_json(capsys):
    assert step.main(["--json", "--arms", "dense", "--steps", "2", "--warmup", "1",
                      "--rounds", "2"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["arm"] == "dense" and row["rounds"] == 2 and row["compile"] is False
    assert row["bare_tokens_per_s"] > 0 and row["ablate_tokens_per_s"] > 0
    assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]


def test_bench_step_table(capsys):
    assert step.main(["--arms", "moe", "--steps", "2", "--warmup", "1", "--rounds", "1"]) == 0
    cap = capsys.readouterr()
    out = cap.out
    assert "a plain loop" in out and "ablate/bare" in out  # the method, then the table
    assert out.splitlines()[-1].split()[:2] == ["moe", "off"]
    assert "Tip" not in out + cap.err and "GPU available" not in out + cap.err  # no banners
