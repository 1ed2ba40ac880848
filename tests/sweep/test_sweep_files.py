"""Every shipped sweep file loads, and every option it can reach validates."""

import re
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
    comment citing where the claim comes from and its measured time, every option valid."""
    spec = load_sweep(path)
    assert spec.study == "claim-" + path.stem.replace("_", "-")
    assert spec.repeats >= 3 and spec.expect
    assert all(e.source and e.claim for e in spec.expect)
    header = path.read_text().split("study:")[0]
    assert "et al." in header  # the header cites the source
    # and says how long it took, within the claims' budget of an hour on 2 cores
    minutes = re.search(r"# Measured: ([0-9.]+) minutes on 2 CPU cores", header)
    assert minutes and float(minutes.group(1)) <= 60, "say the measured time in the header"
    Sweep(spec)
    assert not ablate_home.exists()
