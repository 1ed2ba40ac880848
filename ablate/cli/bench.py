"""`ablate bench moe|step`: the benchmarks of `ablate/bench/`, each with its own options
(`ablate bench moe --help`); they print their method with their numbers."""

from __future__ import annotations

import argparse
import importlib


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks (`ablate bench moe`, `ablate bench step`)")
    b.add_argument("what", choices=["moe", "step"], help="what to time: moe (the MoE layer vs "
                   "its dense equivalent), step (a training step under ablate's Trainer vs a "
                   "bare PyTorch loop)")
    b.add_argument("rest", nargs=argparse.REMAINDER, metavar="...",
                   help="the benchmark's own options (e.g. `ablate bench moe --help`)")


def run(a) -> int:
    return importlib.import_module(f"ablate.bench.{a.what}").main(a.rest)
