"""`ablate bench step`: what ablate's training path costs per step over a bare PyTorch loop.

The same model (ablate's `Transformer`), the same batches (random tokens, one tensor),
the same AdamW groups, schedule, gradient clipping and aux-loss weighting, two ways:
(a) bare: a plain loop (forward, loss, backward, clip, step, schedule, zero_grad), the
    slow obvious reference a researcher would write;
(b) ablate: `LMModule` under a Lightning `Trainer` built as `ablate train` builds it
    (deterministic, ablate's callbacks: throughput, routing stats, router health) with
    its MLflow logger writing into a real run of a temporary SQLite store.
Both run under the same `torch.use_deterministic_algorithms` setting (ablate's default).
Each round trains both for `--warmup` + `--steps` steps on a fresh model of the same seed,
in rotating order, and times the last `--steps` steps (a callback's wall clock in (b));
tokens/s are medians over rounds, the ratio is the median of per-round ratios ablate/bare;
best/best compares each path's fastest round (other processes only ever slow a round down).
`--compile` adds `trainer.compile=true` to the same rounds: its speed-up over eager is the
median of per-round ratios of ablate's path (the first steps, which compile, are warmup).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

ARMS = {
    "dense": ["model.ffn=dense"],
    "moe": ["model.ffn=moe", "model.moe.n_experts=8", "model.moe.top_k=2",
            "model.moe.d_expert=256"],
}
BASE = ["model.d_model=128", "model.n_layers=4", "model.n_heads=4", "model.d_ff=512",
        "data.block_size=128", "data.batch_size=16", "model.vocab_size=256",
        "tracking.routing_stats_every=10", "trainer.log_every=10", "trainer.progress=false"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablate bench step", description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=sorted(ARMS),
                   help="models to time (default: dense moe)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per round")
    p.add_argument("--rounds", type=int, default=11,
                   help="interleaved rounds per arm (short rounds, many: the machine's drift "
                        "cancels within a round)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as is)")
    p.add_argument("--compile", action="store_true", help="also time trainer.compile=true (both "
                   "paths), in the same rounds: its speed-up over eager")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    return p


def config(arm: str, compile_model: bool = False):
    from ablate.config.load import load_config

    return load_config(overrides=[*BASE, *ARMS[arm],
                                  f"trainer.compile={str(compile_model).lower()}"])


def batches(cfg, n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    B, S, V = cfg.data.batch_size, cfg.data.block_size, cfg.model.vocab_size
    tokens = torch.randint(0, V, (n, B, S + 1), generator=g)
    return [(t[:, :-1].contiguous(), t[:, 1:].contiguous()) for t in tokens]


def _module(cfg):
    from ablate.training.module import LMModule
    from ablate.training.run import compile_model

    torch.manual_seed(cfg.trainer.seed)
    module = LMModule(cfg.model, cfg.optim, cfg.trainer.max_steps, cfg.data.block_size)
    if cfg.trainer.compile:
        compile_model(module)
    return module


def bare(cfg, data) -> float:
    """Seconds for the last len(data) - warmup steps of a plain loop (warmup: module attr)."""
    from ablate.models.moe.layer import MoELayer  # noqa: F401 - the same model code

    module = _module(cfg).train()
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    clip = cfg.optim.grad_clip
    start = None
    for i, batch in enumerate(data):
        if i == bare.warmup:
            start = time.perf_counter()
        lm, _, weighted, _ = module._losses_mtp(batch, mtp=True)
        loss = lm + sum(weighted.values()) if weighted else lm
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        for layer in module.model.moe_layers:  # bias balancing, as LMModule does per step
            if layer.last_load_E is not None:
                layer.router.after_step(layer.last_load_E)
    return time.perf_counter() - start


bare.warmup = 5


class _Clock:
    """Wall clock from the start of step `warmup` to the end of the last step."""

    def __init__(self, warmup: int):
        import lightning as L

        outer = self

        class Cb(L.Callback):
            def on_train_batch_start(self, trainer, *_a):
                if trainer.global_step == outer.warmup:
                    outer.start = time.perf_counter()

            def on_train_batch_end(self, trainer, *_a):
                outer.end = time.perf_counter()

        self.warmup, self.start, self.end, self.callback = warmup, None, None, Cb()


def ablate_path(cfg, data, client, experiment_id: str) -> float:
    """Seconds for the same steps under ablate's Trainer, callbacks and MLflow logger."""
    from torch.utils.data import DataLoader

    from ablate.tracking import runs
    from ablate.tracking.logger import MlflowRunLogger
    from ablate.training.callbacks import Throughput
    from ablate.training.routing_stats import RouterHealth, RoutingStats
    from ablate.training.run import make_trainer

    module = _module(cfg)
    run_id = runs.create_run(client, experiment_id, "bench-step", {})
    logger = MlflowRunLogger(client, run_id)
    clock = _Clock(bare.warmup)
    tokens = cfg.data.batch_size * cfg.data.block_size
    callbacks = [Throughput(tokens, cfg.trainer.log_every), clock.callback]
    if cfg.model.ffn == "moe":
        callbacks += [RoutingStats(cfg.tracking.routing_stats_every),
                      RouterHealth(cfg.tracking.routing_stats_every)]
    cfg.trainer.max_steps = len(data)
    cfg.trainer.val_every = len(data) + 1  # no validation inside the timed window
    trainer = make_trainer(cfg, logger, callbacks, progress_bar=False)
    logger.step_source = lambda: trainer.global_step
    loader = DataLoader(data, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    logger.flush()
    runs.end_run(client, run_id, "FINISHED")
    return clock.end - clock.start


@contextlib.contextmanager
def _quiet():
    """Lightning's banners and tips off (they set their loggers at import: after it)."""
    from ablate.console import quiet_libraries

    with warnings.catch_warnings():
        quiet_libraries()
        warnings.simplefilter("ignore")  # e.g. "validation_step but no val_dataloader": meant so
        yield


def measure(arm: str, steps: int, warmup: int, rounds: int, compiled: tuple[bool, ...],
            client, exp) -> list[dict]:
    """One row per `compiled` setting; within a round every setting and both paths run,
    the order rotated, so each ratio (ablate/bare, compiled/eager) is taken within rounds."""
    import copy

    cfgs = {c: config(arm, c) for c in compiled}
    for cfg in cfgs.values():
        cfg.trainer.max_steps = warmup + steps
    data = batches(cfgs[compiled[0]], warmup + steps)
    bare.warmup = warmup
    torch.use_deterministic_algorithms(cfgs[compiled[0]].trainer.deterministic)  # as the Trainer
    times: dict[tuple[bool, str], list[float]] = {(c, p): [] for c in compiled
                                                  for p in ("bare", "ablate")}
    runs = [(c, p) for c in compiled for p in ("bare", "ablate")]
    for r in range(rounds):
        for c, p in runs[r % len(runs):] + runs[:r % len(runs)]:
            cfg = copy.deepcopy(cfgs[c])
            times[c, p].append(bare(cfg, data) if p == "bare"
                               else ablate_path(cfg, data, client, exp))
    tokens = steps * cfgs[compiled[0]].data.batch_size * cfgs[compiled[0]].data.block_size
    rows = []
    for c in compiled:
        tb, ta = times[c, "bare"], times[c, "ablate"]
        ratios = [b / a for a, b in zip(ta, tb)]
        row = {"arm": arm, "compile": c, "steps": steps, "rounds": rounds,
               "bare_tokens_per_s": statistics.median(tokens / t for t in tb),
               "ablate_tokens_per_s": statistics.median(tokens / t for t in ta),
               "ratio": statistics.median(ratios), "ratio_min": min(ratios),
               "ratio_max": max(ratios),
               "ratio_best": min(tb) / min(ta)}  # fastest round of each: what interference spares
        if c and False in compiled:  # compiled vs eager, ablate's path, round by round
            row["compile_speedup"] = statistics.median(
                e / t for e, t in zip(times[False, "ablate"], ta))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from ablate.tracking import store

    rows = []
    with tempfile.TemporaryDirectory(prefix="ablate-bench-step-") as tmp, _quiet():
        client = store.client(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        exp = client.create_experiment("bench-step", artifact_location=(Path(tmp) / "a").as_uri())
        for arm in a.arms:
            rows += measure(arm, a.steps, a.warmup, a.rounds,
                            (False, True) if a.compile else (False,),
                            client, exp)
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(__doc__.split("\n\n", 1)[1].strip())
    print(f"\nthreads {torch.get_num_threads()}, {a.rounds} rounds x ({a.warmup} + {a.steps} "
          "steps), batch 16 x 128 tokens, d_model 128, 4 layers\n")
    print(f"{'arm':<8}{'compile':>8}{'bare tok/s':>12}{'ablate tok/s':>14}{'ablate/bare':>13}"
          f"  (min-max)  best/best{'   compiled/eager' if a.compile else ''}")
    for r in rows:
        speedup = f"   {r['compile_speedup']:.2f}x" if "compile_speedup" in r else ""
        print(f"{r['arm']:<8}{'on' if r['compile'] else 'off':>8}{r['bare_tokens_per_s']:>12,.0f}"
              f"{r['ablate_tokens_per_s']:>14,.0f}{r['ratio']:>12.3f}x  "
              f"({r['ratio_min']:.3f}-{r['ratio_max']:.3f}){r['ratio_best']:>10.3f}x{speedup}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
