"""A router registered from outside the package sweeps like a built-in one."""

import os
import subprocess
import sys

import yaml

from ablate.registry import ROUTERS
from tests.mlflow_helpers import all_runs
from tests.plugin_example import install


def test_readme_router_is_registered_for_the_test_session():
    assert "cosine" in ROUTERS.names()


def test_sweep_over_a_plugin_router_by_name(tmp_path, ablate_home, tiny):
    install(tmp_path)
    sweep = {"study": "plug", "base": {"model": {"ffn": "moe"}},
             "space": {"model.moe.router.name": ["cosine", "softmax_topk"]},
             "sampler": {"name": "bruteforce"}, "n_trials": 2}
    (tmp_path / "plug.yaml").write_text(yaml.safe_dump(sweep))
    env = {**os.environ, "ABLATE_HOME": str(ablate_home),
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "ablate", "sweep", str(tmp_path / "plug.yaml"),
                           "--plugin", "myrouters", *tiny], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    children = [r for r in all_runs(ablate_home) if "mlflow.parentRunId" in r.data.tags]
    assert {r.data.params["model.moe.router.name"] for r in children} == {"cosine", "softmax_topk"}
    assert all(r.info.status == "FINISHED" for r in children)


def test_unknown_plugin_module_is_one_line(tmp_path, ablate_home):
    proc = subprocess.run([sys.executable, "-m", "ablate", "train", "--plugin", "no_such_mod_xyz"],
                          capture_output=True, text=True,
                          env={**os.environ, "ABLATE_HOME": str(ablate_home)})
    assert proc.returncode == 2 and "--plugin" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
