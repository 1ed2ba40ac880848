import subprocess
import sys

from ablate.cli import main
from tests.mlflow_helpers import all_runs, store


def test_tiny_train_lands_in_mlflow(ablate_home, tiny, capsys):
    assert main(["train", "model.ffn=moe", *tiny]) == 0
    runs = all_runs(ablate_home)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.ffn"] == "moe"
    assert int(run.data.params["params_active"]) > 0
    for key in ("train/loss", "train/lm_loss", "train/aux/switch", "val/loss", "val/ppl",
                "perf/tokens_per_s", "moe/load_cv", "moe/l0/router_entropy",
                "moe/l0/router_grad_norm", "moe/l1/routing_churn", "moe/router_grad_norm"):
        assert key in run.data.metrics, key
    assert run.data.tags["ablate.state"] == "COMPLETE"
    # sizes describe the config: params only (MLflow's compare view would default to them)
    assert not {"params_active", "params_total", "flops_per_token"} & set(run.data.metrics)
    assert run.data.tags["ablate.arm"] == "moe-softmax_topk-E8-k2"  # no seed: repeats pool
    assert run.data.tags["ablate.data_fingerprint"]
    arts = {a.path for a in store(ablate_home).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "routing"} <= arts
    # the last validation happens at the end even when val_every does not divide max_steps
    hist = store(ablate_home).get_metric_history(run.info.run_id, "val/loss")
    assert max(m.step for m in hist) == 6
    assert "val/loss=" in capsys.readouterr().out


def test_bad_input_exits_2_and_creates_nothing(ablate_home):
    proc = subprocess.run(
        [sys.executable, "-m", "ablate", "train", "model.moe.top_k=9", "model.moe.n_experts=8"],
        capture_output=True, text=True,
        env={**__import__("os").environ, "ABLATE_HOME": str(ablate_home)},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.moe.top_k" in lines[0]
    assert not ablate_home.exists()


def test_help_explains_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for word in ("train", "sweep", "ui", "ABLATE_HOME", "quickstart"):
        assert word in out


def test_noncausal_run_is_tagged(ablate_home, tiny):
    assert main(["train", "model.ffn=moe", "model.moe.router.name=expert_choice",
                 "model.moe.allow_noncausal_routing=true", *tiny]) == 0
    (run,) = all_runs(ablate_home)
    assert run.data.tags["ablate.noncausal_routing"] == "true"


FROZEN_PLUGIN = """
from ablate.models.moe.routers import ComposedRouter, ComposedRouterConfig
from ablate.registry import ROUTERS


@ROUTERS.register("stiff", ComposedRouterConfig)
class Stiff(ComposedRouter):
    # scores as softmax_topk, but every gate a constant 1/K: no config rule knows it
    def forward(self, x_TD, token_ids_T=None):
        out = super().forward(x_TD, token_ids_T)
        out.gates_TK = out.gates_TK.detach() * 0 + 1.0 / out.gates_TK.shape[1]
        return out
"""


def test_a_router_the_lm_loss_cannot_reach_stops_before_training(ablate_home, tiny, tmp_path,
                                                                 monkeypatch, capsys):
    (tmp_path / "stiffplug.py").write_text(FROZEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["train", "--plugin", "stiffplug", "model.ffn=moe", "model.moe.router.name=stiff", *tiny]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MoE layer 0 (block 0) cannot learn" in err[0], err
    assert all_runs(ablate_home) == []  # nothing logged: the probe runs before the run exists
    assert main([*args, "model.moe.allow_frozen_router=true"]) == 0
    (run,) = all_runs(ablate_home)
    assert run.data.tags["ablate.frozen_router"] == "l0,l1"


def test_a_frozen_config_is_refused_up_front(ablate_home, tiny, capsys):
    assert main(["train", "model.ffn=moe", "model.moe.top_k=1", "model.moe.router.gate=prob",
                 *tiny]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.moe.router.normalize=true" in err[0], err
    assert not ablate_home.exists()


def test_a_dense_run_logs_no_moe_keys(ablate_home, tiny):
    """Params that do not apply are not logged: a dense run showing `model.moe.n_experts=8`
    reads as if it had experts."""
    assert main(["train", *tiny]) == 0
    (run,) = all_runs(ablate_home)
    params = run.data.params
    assert params["model.ffn"] == "dense" and "params_active" in params
    assert not [k for k in params if k.startswith(("model.moe.", "model.mla.", "init.upcycle"))]
    assert "model.mtp.weight" not in params and params["model.mtp.depth"] == "0"
    assert run.data.tags["ablate.arm"] == "dense-ff64"
