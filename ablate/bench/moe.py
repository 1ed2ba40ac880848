"""`ablate bench moe`: what the MoE layer costs, forward + backward, in one run.

For each row (E experts, top-k, d_expert, n_shared) three modules see the same input:
(a) `MoELayer` from an `MoEConfig` with `aux={}` and the default grouped dispatch: router
    (float32 logits, softmax, top-k), capacity hook (dropless), sort, gather, grouped GEMMs,
    scatter-add and shared experts, so the real layer cost;
(b) a dense SwiGLU with the same ACTIVE parameters, hidden = k*d_expert + n_shared*d_shared:
    the same GEMM FLOPs, so 1.0x is the physical limit;
(c) the same MoE layer with `dispatch="loop"`, the reference;
(d) with `--peer hf`: Hugging Face's OLMoE block (`transformers`) at the same sizes and with
    the same weights (so the same routing), its experts run by `grouped_mm` and by its eager
    per-expert loop, timed in the same interleaved rounds (rows without shared experts).
Ratios are medians of per-repetition ratios, repetitions interleaved (a, b, c rotated) so
load from other processes hits all three alike. A freshly initialised router (std 0.02)
gives near-uniform but random routing; max/mean expert load is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch

from ablate.config.schema import MoEConfig
from ablate.console import quiet_stderr
from ablate.models.mlp import SwiGLU
from ablate.models.moe.layer import MoELayer

ROWS = [  # (n_experts, top_k, d_expert, n_shared)
    (8, 2, 512, 0),
    (64, 8, 128, 0),
    (256, 8, 128, 0),
    (64, 8, 128, 1),
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablate bench moe", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="bfloat16: autocast, float32 parameters (mixed precision)")
    p.add_argument("--tokens", type=int, default=4096, help="T tokens per step")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions per module")
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions per module")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as is)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs")
    p.add_argument("--peer", choices=["hf"], help="also time Hugging Face's OLMoE block "
                   "(grouped_mm and eager experts) in the same run")
    p.add_argument("--verbose", action="store_true",
                   help="keep the CPU profiler's own stderr lines (hidden by default)")
    return p


def build(row: tuple[int, int, int, int], d_model: int, device: str):
    """-> (moe, dense, loop): the loop layer carries the grouped layer's weights."""
    n_experts, top_k, d_expert, n_shared = row
    cfg = MoEConfig(n_experts=n_experts, top_k=top_k, d_expert=d_expert, n_shared=n_shared, aux={})
    moe = MoELayer(cfg, d_model, d_expert).to(device)
    loop = MoELayer(MoEConfig(**{**cfg.__dict__, "dispatch": "loop"}), d_model, d_expert).to(device)
    loop.load_state_dict(moe.state_dict())
    dense = SwiGLU(d_model, top_k * d_expert + n_shared * moe.cfg.shared_width).to(device)
    return moe, dense, loop


def hf_peers(moe: MoELayer, d_model: int, device: str) -> dict[str, torch.nn.Module]:
    """OLMoE's sparse block with `moe`'s weights (router (E, D); experts stored (out, in)),
    one per experts implementation: {"hf_grouped": ..., "hf_eager": ...}."""
    from transformers.models.olmoe import OlmoeConfig
    from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock

    E, K = moe.cfg.routed_experts, moe.cfg.routed_top_k
    peers = {}
    for name, impl in (("hf_grouped", "grouped_mm"), ("hf_eager", "eager")):
        cfg = OlmoeConfig(hidden_size=d_model, intermediate_size=moe.cfg.expert_width,
                          num_experts=E, num_experts_per_tok=K,
                          norm_topk_prob=moe.cfg.router.normalize)
        cfg._experts_implementation = impl
        block = OlmoeSparseMoeBlock(cfg).to(device)
        with torch.no_grad():
            block.gate.weight.copy_(moe.router.weight)
            block.experts.gate_up_proj.copy_(moe.experts.w13.transpose(-1, -2))
            block.experts.down_proj.copy_(moe.experts.w2.transpose(-1, -2))
        peers[name] = block
    return peers


def make_step(module: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor, dtype: torch.dtype):
    """One training-like step: forward (autocast if bf16), backward, grads set to None."""
    params = [p for p in module.parameters()]
    amp = dtype != torch.float32

    def step() -> None:
        with torch.autocast(x.device.type, dtype=dtype, enabled=amp):
            out = module(x)
        y = out[0] if isinstance(out, tuple) else out
        y.backward(dy.to(y.dtype))
        x.grad = None
        for p in params:  # Lightning's zero_grad(set_to_none=True): fresh grads every step
            p.grad = None

    return step


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(steps: dict[str, Callable[[], None]], repeats: int, warmup: int,
                     device: str) -> dict[str, list[float]]:
    """Seconds per step, the steps interleaved and their order rotated every repetition."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            _sync(device)
            t0 = time.perf_counter()
            steps[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


class BackgroundLoad:
    """Share of the machine's CPU time that other processes used while timing (Linux
    /proc/stat minus this process's own CPU time; None elsewhere). Many small ops with
    2 OpenMP threads suffer far more from a busy neighbour than a dense FFN's few big
    GEMMs, so a row measured under load overstates the MoE ratio."""

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        self.share = None
        if self.start and end:
            (busy0, total0, own0), (busy1, total1, own1) = self.start, end
            if total1 > total0:
                self.share = max(0.0, (busy1 - busy0 - (own1 - own0)) / (total1 - total0))

    @staticmethod
    def _sample():
        import os
        import resource

        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
        use = resource.getrusage(resource.RUSAGE_SELF)
        return busy / hz, sum(ticks) / hz, use.ru_utime + use.ru_stime


def peak_mem_mb(step: Callable[[], None], device: str, verbose: bool = False) -> float:
    """Peak tensor memory allocated during one step above what existed before it (MiB).

    CUDA: max_memory_allocated. CPU: the torch.profiler memory timeline (every tensor
    allocation and free, parameters excluded); tracemalloc cannot see torch's allocator.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import profile
    from torch.profiler._memory_profiler import Action

    with quiet_stderr(keep=verbose), profile(profile_memory=True, record_shapes=True,
                                             with_stack=True) as prof:
        step()
    cur = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            cur += size
        elif action == Action.DESTROY:
            cur -= size
        peak = max(peak, cur)
    return peak / 2**20


def run(args: argparse.Namespace) -> dict:
    device, dtype = args.device, getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    rows = []
    for row in ROWS:
        moe, dense, loop = build(row, args.d_model, device)
        x = torch.randn(1, args.tokens, args.d_model, device=device, requires_grad=True)
        dy = torch.randn_like(x)
        modules = {"moe": moe, "dense": dense, "loop": loop}
        if args.peer == "hf" and row[3] == 0:  # OLMoE has no shared experts
            modules.update(hf_peers(moe, args.d_model, device))
        steps = {name: make_step(m, x, dy, dtype) for name, m in modules.items()}
        with BackgroundLoad() as background:
            times = time_interleaved(steps, args.repeats, args.warmup, device)
        with torch.no_grad():
            load = moe.router(x.detach().reshape(-1, args.d_model)).ids_TK.flatten()
            load_E = torch.bincount(load, minlength=moe.cfg.routed_experts).float()
        mem = {name: peak_mem_mb(steps[name], device, args.verbose) for name in ("moe", "dense")}
        ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
        ratios = {ref: statistics.median(a / b for a, b in zip(times["moe"], times[ref]))
                  for ref in ("dense", "loop")}
        peers = {name: round(statistics.median(a / b for a, b in zip(times[name],
                                                                    times["dense"])), 3)
                 for name in times if name.startswith("hf_")}
        n_experts, top_k, d_expert, n_shared = row
        rows.append({
            "n_experts": n_experts, "top_k": top_k, "d_expert": d_expert, "n_shared": n_shared,
            "ratio_vs_dense": round(ratios["dense"], 3),
            "ratio_vs_reference": round(ratios["loop"], 3),
            "peak_mem_mb": round(mem["moe"], 1),
            "peak_mem_mb_dense": round(mem["dense"], 1),
            "ms_moe": round(ms["moe"], 2), "ms_dense": round(ms["dense"], 2),
            "ms_reference": round(ms["loop"], 2),
            "load_max_over_mean": round((load_E.max() / load_E.mean()).item(), 3),
            "background_cpu": None if background.share is None else round(background.share, 3),
            **{f"{name}_ratio_vs_dense": r for name, r in peers.items()},
            **{f"ms_{name}": round(ms[name], 2) for name in peers},
        })
    return {"rows": rows, "meta": _meta(args)}


def _meta(args: argparse.Namespace) -> dict:
    dev = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    mem = "cuda max_memory_allocated" if args.device == "cuda" else "torch.profiler memory timeline"
    method = (
        f"fwd+bwd, T={args.tokens} d_model={args.d_model} {args.dtype}; median of "
        f"{args.repeats} interleaved repetitions after {args.warmup} warm-up; moe = MoELayer "
        f"incl. router+sort (fresh router: near-uniform load); dense = SwiGLU of equal active "
        f"params; reference = dispatch='loop'; param grads set to None each step; "
        f"peak mem = {mem} above the step's start; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {dev}"
    )
    return {"method": method, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": dev, "dtype": args.dtype, "tokens": args.tokens, "d_model": args.d_model,
            "repeats": args.repeats, "warmup": args.warmup}


def render(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="MoE layer fwd+bwd: ratios measured in one run", header_style="bold")
    cols = ["E", "k", "d_exp", "shared", "moe ms", "dense ms", "loop ms", "vs dense",
            "vs loop", "MiB", "dense MiB", "load", "others"]
    peers = [p for p in ("hf_grouped", "hf_eager")
             if any(f"{p}_ratio_vs_dense" in r for r in result["rows"])]
    cols += [f"{p.replace('_', ' ')} vs dense" for p in peers]
    for c in cols:
        table.add_column(c, justify="right")
    for r in result["rows"]:
        theirs = [f"{r[f'{p}_ratio_vs_dense']:.2f}x" if f"{p}_ratio_vs_dense" in r else "n/a"
                  for p in peers]
        table.add_row(*map(str, (
            r["n_experts"], r["top_k"], r["d_expert"], r["n_shared"], f"{r['ms_moe']:.1f}",
            f"{r['ms_dense']:.1f}", f"{r['ms_reference']:.0f}", f"{r['ratio_vs_dense']:.2f}x",
            f"{r['ratio_vs_reference']:.3f}x", f"{r['peak_mem_mb']:.0f}",
            f"{r['peak_mem_mb_dense']:.0f}", f"{r['load_max_over_mean']:.2f}",
            "?" if r["background_cpu"] is None else f"{r['background_cpu']:.0%}", *theirs)))
    console = Console(width=max(Console().width, 110))
    console.print(table)
    console.print(f"method: {result['meta']['method']}")
    console.print("MiB: peak tensor memory of one step; load: max/mean expert load; others:"
                  " CPU share other processes used while the row was timed")
    if peers:
        console.print("hf: transformers' OlmoeSparseMoeBlock with the same weights, experts by "
                      "grouped_mm / eager; n/a: OLMoE has no shared experts")
    if result["meta"].get("peer_skipped"):
        console.print(f"--peer hf skipped: {result['meta']['peer_skipped']}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        _parser().error("--device cuda: no CUDA device visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    skipped = None
    if args.peer == "hf":
        try:
            import transformers  # noqa: F401 - only whether it is there
        except ImportError:
            skipped = "transformers is not installed (pip install transformers)"
            args.peer = None
    result = run(args)
    result["meta"]["peer_skipped"] = skipped
    if args.json:
        print(json.dumps(result))
    else:
        render(result)
    return 0
