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


CLAIMS = sorted((Path(__file__).resolve().parents[2] / "sweeps" / "claims").glob("*.yaml"))


@pytest.mark.parametrize("path", CLAIMS, ids=lambda p: p.stem)
def test_claim_file_validates(path, ablate_home):
    """A claim: paired seeds (repeats >= 3), at least one expectation with its source, a
    comment citing where the claim comes from, and every option valid."""
    spec = load_sweep(path)
    assert spec.study == "claim-" + path.stem.replace("_", "-")
    assert spec.repeats >= 3 and spec.expect
    assert all(e.source and e.claim for e in spec.expect)
    assert "et al." in path.read_text().split("study:")[0]  # the header cites the source
    Sweep(spec)
    assert not ablate_home.exists()
