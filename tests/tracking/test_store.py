"""The MLflow store: created once under a lock whatever runs at the same time, and a broken
file stops every command in one line before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from ablate.cli import main
from tests.conftest import TINY
from tests.mlflow_helpers import all_runs


def _sweep_file(tmp_path, name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"study": name, "space": {"optim.lr": [1e-3]},
                                    "n_trials": 1}))
    return str(path)


def test_two_sweeps_started_together_on_a_new_home_both_finish(ablate_home, tmp_path):
    env = {**os.environ, "ABLATE_HOME": str(ablate_home)}
    procs = [subprocess.Popen([sys.executable, "-m", "ablate", "sweep",
                               _sweep_file(tmp_path, name), *TINY], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for name in ("first", "second")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert len([r for r in all_runs(ablate_home) if "ablate.trial" in r.data.tags]) == 2


def test_an_unreadable_store_is_one_line_for_every_command(ablate_home, tmp_path, capsys):
    path = _sweep_file(tmp_path, "s")
    assert main(["sweep", path, *TINY]) == 0
    db = ablate_home / "mlflow.db"
    with open(db, "r+b") as f:  # a torn copy: the second half of the file is gone
        f.truncate(db.stat().st_size // 2)
    journal = (ablate_home / "optuna" / "s.journal").read_bytes()
    capsys.readouterr()
    for argv in (["sweep", path, *TINY], ["compare", "--study", "s"], ["doctor", "--study", "s"],
                 ["train", *TINY]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: the MLflow store") and str(db) in err, (argv, err)
        assert "\n" not in err and "unreadable" in err
    assert (ablate_home / "optuna" / "s.journal").read_bytes() == journal  # nothing written
