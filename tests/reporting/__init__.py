"""Reporting tests share one tiny real study (2 arms x 2 seeds, trained once per process)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import yaml

STUDY = "report"
SWEEP = {
    "study": STUDY,
    "space": {"arm": {"dense": {"model.ffn": "dense"},
                      "moe-E4": {"model.ffn": "moe", "model.moe.n_experts": 4,
                                 "model.moe.top_k": 1}}},
    "objective": {"metric": "val/loss", "direction": "minimize"},
    "sampler": {"name": "bruteforce", "seed": 0},
    "n_trials": 2,
    "repeats": 2,
}


@functools.cache
def tiny_study_home() -> Path:
    """ABLATE_HOME holding study `report`: arms dense and moe-E4, seeds 0 and 1 each (the
    tiny model of tests/conftest.py). ABLATE_HOME is restored afterwards."""
    from ablate.cli import main
    from tests.conftest import TINY

    root = Path(tempfile.mkdtemp(prefix="ablate-report-tests-"))
    atexit.register(shutil.rmtree, root, True)
    home = root / "ablate-runs"
    sweep = root / "report.yaml"
    sweep.write_text(yaml.safe_dump(SWEEP))
    old = os.environ.get("ABLATE_HOME")
    os.environ["ABLATE_HOME"] = str(home)
    try:
        assert main(["sweep", str(sweep), *TINY]) == 0
    finally:
        if old is None:
            os.environ.pop("ABLATE_HOME", None)
        else:
            os.environ["ABLATE_HOME"] = old
    return home


def ablate(*argv: str) -> int:
    """`ablate compare|dashboard ...` through the real CLI."""
    from ablate import cli

    return cli.main(list(argv))


ROOT_DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
