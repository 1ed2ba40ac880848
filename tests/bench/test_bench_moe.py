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
