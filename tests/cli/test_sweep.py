"""`ablate sweep --dry-run`: the points a study would train, each one's differences from the
base and a measured rough time, with nothing created."""

from __future__ import annotations

import yaml

from ablate.cli import main
from tests.conftest import TINY


def test_dry_run_lists_every_point_and_creates_nothing(ablate_home, tmp_path, capsys):
    spec = {
        "study": "plan",
        "space": {"arm": {"dense": {"model.ffn": "dense"},
                          "moe": {"model.ffn": "moe", "model.moe.n_experts": 4}}},
        "repeats": 2,
        "tune": {"space": {"optim.lr": [1e-3, 1e-2]}, "fraction": 0.5, "seeds": [0]},
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), "--dry-run", *TINY]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    # 2 arms x 2 rates of tuning, then each arm at its tuned rate
    assert len(rows) == 6, out
    stages = [r.split("│")[2].strip() for r in rows]
    assert stages == ["tune"] * 4 + [""] * 2, out
    main_rows = rows[4:]
    assert all("optim.lr=tuned" in r for r in main_rows)
    assert any("model.moe.n_experts=4" in r for r in main_rows)
    assert "minutes of training in all" in out
    # nothing of the study exists: no store, no Optuna storage, no runs
    made = {p.relative_to(ablate_home).parts[0] for p in ablate_home.rglob("*")}
    assert made <= {"cache"}, made
