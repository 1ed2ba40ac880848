"""Where a run's time goes (`trainer.profile=true`): start-up, then the fit by what it does.

The fit is timed by Lightning's own `SimpleProfiler`, which records every hook it calls
(`[Callback]Name.hook`, `[Strategy]...training_step`, `run_training_batch`, ...) with its
wall time. Hooks nest (a checkpoint callback's `on_train_batch_end` calls `save_checkpoint`,
which calls every callback's `on_save_checkpoint`; `run_training_batch` calls the gradient
hooks), so each is counted once: in its outermost action's category, except a callback's
gradient hook, which is moved out of "training steps" into its callback's category. What
Lightning does between hooks (its logger connector, the loops' own bookkeeping) is the fit
minus the categories, shown as "other". Start-up is timed here, from the process's start
(Linux /proc) to the fit's.
"""

from __future__ import annotations

import os
import time

# category of an action; the first rule whose test matches wins
CATEGORIES = (
    ("checkpoints", lambda a: "ModelCheckpoint" in a or "StableCheckpoints" in a
     or a == "save_checkpoint" or a.endswith((".on_save_checkpoint", ".state_dict"))),
    ("router statistics", lambda a: "RouterHealth" in a or "RoutingStats" in a),
    ("logging and progress", lambda a: a.startswith("[Callback]") and any(
        n in a for n in ("Throughput", "FlushMetrics", "StepProgress", "ProgressBar"))),
    ("validation", lambda a: "validation" in a or a.startswith("[_EvaluationLoop]")),
    ("data", lambda a: a.startswith("[_TrainingEpochLoop].train_dataloader_next")),
    ("training steps", lambda a: a == "run_training_batch"),
)
# held by a checkpoint callback's hook (which calls save_checkpoint, which calls these)
IN_CHECKPOINT = (".on_save_checkpoint", ".state_dict")
# callback hooks that run inside run_training_batch: moved out of "training steps"
IN_BATCH = (".on_before_backward", ".on_after_backward", ".on_before_optimizer_step",
            ".on_before_zero_grad")


def category(action: str) -> str | None:
    for name, test in CATEGORIES:
        if test(action):
            return name
    return None


def process_age() -> float | None:
    """Seconds since this process started (Linux), else None."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


class StartupClock:
    """Wall time of the named start-up phases (data, model, router probe, ...). The first
    clock of a process also holds the time from the process's start (imports, config,
    checks); later ones (a sweep's next trial) start at their own `build`."""

    _first = True

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.before = process_age() if StartupClock._first else None
        StartupClock._first = False
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._t
        self._t = now


def breakdown(durations: dict[str, list[float]], clock: StartupClock) -> dict:
    """{"startup": {phase: s}, "fit": {category: s}, "fit_s", "startup_s", "steps"}: the fit's
    categories sum to the fit's wall time (what no hook holds is "other")."""
    fit_s = clock.phases.get("fit", 0.0)
    fit: dict[str, float] = {}
    for action, times in durations.items():
        name = category(action)
        if name is None or action == "save_checkpoint" or action.endswith(IN_CHECKPOINT):
            continue
        fit[name] = fit.get(name, 0.0) + sum(times)
        if action.startswith("[Callback]") and action.endswith(IN_BATCH):
            fit["training steps"] = fit.get("training steps", 0.0) - sum(times)
    fit["other"] = max(0.0, fit_s - sum(fit.values()))
    startup = {"process start to build": clock.before} if clock.before is not None else {}
    startup.update({k: v for k, v in clock.phases.items() if k != "fit"})
    return {"fit_s": fit_s, "fit": fit, "startup": startup,
            "startup_s": sum(startup.values()),
            "steps": len(durations.get("run_training_batch", []))}


def render(report: dict) -> str:
    """The breakdown as aligned lines: seconds and share of the whole run."""
    total = report["fit_s"] + report["startup_s"]
    lines = [f"where the time went: {total:.1f} s ({report['steps']} training steps)"
             + (f" ({report['note']})" if report.get("note") else "")]
    for title, part in (("start-up", report["startup"]), ("fit", report["fit"])):
        lines.append(f"  {title}: {sum(part.values()):.1f} s")
        for name, s in sorted(part.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {name:<28} {s:8.2f} s  {100 * s / total:5.1f}%")
    return "\n".join(lines)
