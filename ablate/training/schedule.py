"""Several budgets from one run: the learning-rate schedules, and the cooldown branches of a
warmup-stable-decay run.

    lr(step) / optim.lr for a run of N steps, warmup W:
      cosine   (step + 1) / W while step < W, then cosine from 1 to min_lr_ratio at N
      wsd      (step + 1) / W while step < W; 1 while step < N - D; then
               1 - (1 - min_lr_ratio) * shape(p), p = (step - (N - D) + 1) / D, shape sqrt
               (1-sqrt) or identity (linear); D = cooldown_steps(N, decay_fraction)
    (WSD: Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
    Durations"; Hu et al. 2024, MiniCPM.)

In the stable phase the rate does not depend on N: a wsd run of B steps and one of N > B
steps share their trajectory up to B - D_B. So one run measures every budget B of
`trainer.budgets`: it trains its own N = max_steps steps, saving its state at each branch
point B - D_B (model, optimizer, scheduler, data position and RNG states: a Lightning
checkpoint with the `RunState` callback's state); after it, each branch resumes from that
state as a run of B steps would (its own cooldown, the same validations), never touching the
main trajectory. The branch's last val/loss is the budget's; every budget, N included, is
logged as `budget/val_loss` (and `budget/val_ppl`) with the budget in tokens as its step.

A branch that was killed resumes from its own last checkpoint; a budget already measured is
kept in `results.json` beside the branch points, so a retried run measures each budget once.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L

from ablate.config.schema import OptimConfig, RunConfig
from ablate.config.validate import cooldown_steps

RESULTS = "results.json"


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1, cosine decay to min_ratio at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_multiplier(step: int, optim: OptimConfig, total: int) -> float:
    """lr / optim.lr at optimizer step `step` (0-based) of a run of `total` steps."""
    warmup = optim.warmup_steps
    if optim.schedule != "wsd":  # cosine
        return warmup_cosine(step, warmup, total, optim.min_lr_ratio)
    if step < warmup:
        return (step + 1) / warmup
    cooldown = cooldown_steps(total, optim.decay_fraction)
    if step < total - cooldown:
        return 1.0
    p = min(1.0, (step - (total - cooldown) + 1) / cooldown)
    shape = math.sqrt(p) if optim.decay_shape == "1-sqrt" else p
    return 1.0 - (1.0 - optim.min_lr_ratio) * shape


@dataclass(frozen=True)
class BudgetPlan:
    """The budgets of one run (ascending; the last is the run's own max_steps) and where their
    branch points and results are kept."""

    budgets: tuple[int, ...]
    branch_points: dict[int, int]  # budget -> the step its cooldown starts from
    tokens_per_step: int
    folder: Path

    @property
    def branches(self) -> tuple[int, ...]:
        return self.budgets[:-1]

    def tokens(self, budget: int) -> int:
        return budget * self.tokens_per_step

    def stable_checkpoint(self, budget: int) -> Path:
        return self.folder / f"stable-{budget}.ckpt"

    def branch_dir(self, budget: int) -> Path:
        return self.folder / f"branch-{budget}"

    def results(self) -> dict[int, dict[str, float]]:
        """The budgets measured so far (by this attempt of the run or an earlier one)."""
        try:
            raw = json.loads((self.folder / RESULTS).read_text())
        except (OSError, ValueError):
            return {}
        return {int(b): v for b, v in raw.items()}

    def record(self, budget: int, values: dict[str, float]) -> None:
        """Keep `budget`'s result, atomically (a reader never sees half a file)."""
        out = {**self.results(), budget: values}
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{RESULTS}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({str(b): v for b, v in sorted(out.items())}))
        os.replace(tmp, self.folder / RESULTS)


def plan_for(cfg: RunConfig, tokens_per_step: int, folder: Path) -> BudgetPlan | None:
    """The plan of a run with `trainer.budgets`, else None (a run without budgets is one run)."""
    if not cfg.trainer.budgets:
        return None
    budgets = tuple(sorted({*cfg.trainer.budgets, cfg.trainer.max_steps}))
    f = cfg.optim.decay_fraction
    points = {b: b - cooldown_steps(b, f) for b in budgets[:-1]}
    return BudgetPlan(budgets, points, tokens_per_step, folder)


class StableCheckpoints(L.Callback):
    """Saves the run's whole state at each branch point not yet measured (every rank calls
    save_checkpoint: expert parallelism gathers its shards there; rank 0 writes)."""

    def __init__(self, plan: BudgetPlan):
        done = plan.results()
        self.at = {p: plan.stable_checkpoint(b) for b, p in plan.branch_points.items()
                   if b not in done}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        path = self.at.get(trainer.global_step)
        if path is not None:
            trainer.save_checkpoint(path)


class BranchSchedule(L.Callback):
    """A branch resumes a state saved under the run's own schedule: the optimizer holds the
    learning rate that schedule gave the next step (the stable phase's). Before the first
    step, set it from the branch's schedule at the resumed step count, as a run of the
    branch's length had it."""

    def on_train_start(self, trainer, pl_module) -> None:
        for config in trainer.lr_scheduler_configs:
            s = config.scheduler
            for group, base, fn in zip(s.optimizer.param_groups, s.base_lrs, s.lr_lambdas):
                group["lr"] = base * fn(s.last_epoch)
            s._last_lr = [group["lr"] for group in s.optimizer.param_groups]
