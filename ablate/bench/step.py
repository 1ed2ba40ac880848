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
in alternating order, and times the last `--steps` steps (a callback's wall clock in (b));
tokens/s are medians over rounds, the ratio is the median of per-round ratios ablate/bare.
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
    "moe": ["model.ffn=moe", "model.moe.n_experts=8", "model.moe.top_k=2", "model.moe.d_expert=256"],
}
BASE = ["model.d_model=128", "model.n_layers=4", "model.n_heads=4", "model.d_ff=512",
        "data.block_size=128", "data.batch_size=16", "model.vocab_size=256",
        "tracking.routing_stats_every=10", "trainer.log_every=10", "trainer.progress=false"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablate bench step", description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=sorted(ARMS),
                   help="models to time (default: dense moe)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per arm")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as is)")
    p.add_argument("--compile", action="store_true", help="trainer.compile=true in both paths")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    return p


def config(arm: str, compile_model: bool = False):
    from ablate.config.load import load_config

    return load_config(overrides=[*BASE, *ARMS[arm], f"trainer.compile={str(compile_model).lower()}"])


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
    from ablate.training.callbacks import RouterHealth, RoutingStats, Throughput
    from ablate.training.run import _trainer

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
    trainer = _trainer(cfg, logger, callbacks, progress_bar=False)
    logger.step_source = lambda: trainer.global_step
    loader = DataLoader(data, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    logger.flush()
    runs.end_run(client, run_id, "FINISHED")
    return clock.end - clock.start


@contextlib.contextmanager
def _quiet():
    import logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("lightning.pytorch").level
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("lightning.pytorch").setLevel(level)


def measure(arm: str, steps: int, warmup: int, rounds: int, compile_model: bool, client, exp) -> dict:
    cfg = config(arm, compile_model)
    cfg.trainer.max_steps = warmup + steps
    data = batches(cfg, warmup + steps)
    bare.warmup = warmup
    torch.use_deterministic_algorithms(cfg.trainer.deterministic)  # as the Trainer sets it
    t_bare, t_ablate = [], []
    for r in range(rounds):
        order = (bare, ablate_path) if r % 2 == 0 else (ablate_path, bare)
        for fn in order:
            import copy

            c = copy.deepcopy(cfg)
            dt = fn(c, data) if fn is bare else fn(c, data, client, exp)
            (t_bare if fn is bare else t_ablate).append(dt)
    tokens = steps * cfg.data.batch_size * cfg.data.block_size
    return {
        "arm": arm, "compile": compile_model, "steps": steps, "rounds": rounds,
        "bare_tokens_per_s": statistics.median(tokens / t for t in t_bare),
        "ablate_tokens_per_s": statistics.median(tokens / t for t in t_ablate),
        "ratio": statistics.median(b / a for a, b in zip(t_ablate, t_bare)),
        "ratio_min": min(b / a for a, b in zip(t_ablate, t_bare)),
        "ratio_max": max(b / a for a, b in zip(t_ablate, t_bare)),
    }


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
            rows.append(measure(arm, a.steps, a.warmup, a.rounds, a.compile, client, exp))
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(__doc__.split("\n\n", 1)[1].strip())
    print(f"\nthreads {torch.get_num_threads()}, {a.rounds} rounds x ({a.warmup} + {a.steps} steps), "
          f"batch 16 x 128 tokens, d_model 128, 4 layers{', torch.compile' if a.compile else ''}\n")
    print(f"{'arm':<8}{'bare tok/s':>12}{'ablate tok/s':>14}{'ablate/bare':>13}  (min-max)")
    for r in rows:
        print(f"{r['arm']:<8}{r['bare_tokens_per_s']:>12,.0f}{r['ablate_tokens_per_s']:>14,.0f}"
              f"{r['ratio']:>12.3f}x  ({r['ratio_min']:.3f}-{r['ratio_max']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
