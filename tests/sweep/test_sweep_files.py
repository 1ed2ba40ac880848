"""Every shipped sweep file loads, and every option it can reach validates."""

from pathlib import Path

import pytest

from ablate.sweep.runner import Sweep
from ablate.sweep.spec import load_sweep

SWEEPS = sorted((Path(__file__).resolve().parents[2] / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_file_validates(path, ablate_home):
    spec = load_sweep(path)
    assert spec.study == path.stem
    Sweep(spec)  # validates the base and every arm / choice / endpoint
    assert not ablate_home.exists()  # validation creates nothing
