"""`ablate bench moe --json` at a tiny size: valid JSON, every key, all rows; no time asserted."""

from __future__ import annotations

import json

import pytest
import torch

from ablate.bench.moe import ROWS, main

REQUIRED = {"n_experts", "top_k", "d_expert", "n_shared", "ratio_vs_dense", "ratio_vs_reference",
            "peak_mem_mb"}


@pytest.fixture
def one_thread():
    """Thousands of tiny ops: with other processes on the cores, OpenMP threads that wait
    for each other make this test 10x slower; one thread keeps it a few seconds."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_bench_json(capsys, one_thread):
    assert main(["--json", "--tokens", "256", "--repeats", "2"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout holds the JSON and nothing else
    assert len(out["rows"]) == len(ROWS) == 4
    for row, (n_experts, top_k, d_expert, n_shared) in zip(out["rows"], ROWS):
        assert REQUIRED <= set(row)
        assert (row["n_experts"], row["top_k"], row["d_expert"], row["n_shared"]) == (
            n_experts, top_k, d_expert, n_shared)
        assert row["ratio_vs_dense"] > 0 and row["ratio_vs_reference"] > 0
        assert row["peak_mem_mb"] > 0


def test_bench_is_quiet_unless_verbose(capfd, one_thread):
    """The CPU profiler writes `USDT: profiler_start` lines to file descriptor 2 itself."""
    assert main(["--json", "--tokens", "128", "--repeats", "1", "--warmup", "0"]) == 0
    assert "USDT" not in capfd.readouterr().err
    assert main(["--json", "--tokens", "128", "--repeats", "1", "--warmup", "0", "--verbose"]) == 0
    assert "profiler" in capfd.readouterr().err  # what --verbose keeps (so the test above can fail)


def test_hf_peer_is_the_same_layer_and_is_timed(capsys, one_thread):
    """The peers carry ablate's weights: same routing, same output, same input gradient
    (what makes their timings comparable); --peer hf adds their ratios to the rows without
    shared experts."""
    from ablate.bench.moe import build, hf_peers

    torch.manual_seed(0)
    moe, _, _ = build((8, 2, 32, 0), 16, "cpu")
    x = torch.randn(2, 5, 16)
    ours, _ = moe(x)
    for name, peer in hf_peers(moe, 16, "cpu").items():
        torch.testing.assert_close(peer(x), ours, atol=1e-5, rtol=1e-5, msg=name)
    assert main(["--json", "--tokens", "128", "--repeats", "1", "--warmup", "0", "--peer",
                 "hf"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    for row in rows:
        has = {"hf_grouped_ratio_vs_dense", "hf_eager_ratio_vs_dense"} <= set(row)
        assert has == (row["n_shared"] == 0)
