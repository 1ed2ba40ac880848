"""What a sweep shows while it runs (the CLI layer: the sweep code only reports events).

On a terminal: a bar for the study's points and one for the training trial, with ETAs and
the trial's last val/loss. Off a terminal (nohup, a SLURM log, `| cat`): one plain,
flushed line per trial start and end and per validation, each with an ETA, so a log file
shows progress while the sweep runs.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ablate.sweep.record import TrialRecord


def status_line(study) -> str:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if TrialRecord.of(t).is_point:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
    best = ""
    if len(study.directions) == 1 and counts.get("COMPLETE"):
        best = f"  best {study.best_value:.4f} (trial {study.best_trial.number})"
    return (f"done {counts.get('COMPLETE', 0)} pruned {counts.get('PRUNED', 0)} "
            f"failed {counts.get('FAIL', 0)} running {counts.get('RUNNING', 0)}{best}")


def duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class SweepDisplay:
    """The TrialLoop's event sink (`events`) and the training progress sink (`start`,
    `step`, `validated`, `message`, `stop`). Plain lines unless `console` is a terminal."""

    def __init__(self, console: Console, study_name: str, plain: bool | None = None):
        self.console, self.name = console, study_name
        self.plain = (not console.is_terminal) if plain is None else plain
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                             TextColumn("{task.fields[info]}"), console=console)
        self.study_task = self.trial_task = None
        self.total = self.done = 0
        self.t0 = time.monotonic()
        self.trial: dict = {}

    def __enter__(self):
        if not self.plain:
            self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        if not self.plain:
            self.bars.__exit__(*exc)

    def line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {self.name}: {text}", file=sys.stderr, flush=True)

    def _study_eta(self) -> str:
        if not self.done:
            return "?"
        per_point = (time.monotonic() - self.t0) / self.done
        return duration(per_point * max(self.total - self.done, 0))

    # -- the study ------------------------------------------------------------------------
    def events(self, kind: str, **info) -> None:
        if kind == "open":
            self.total, self.t0 = max(info["left"], 0), time.monotonic()
            if self.plain:
                self.line(f"{self.total} points to train")
            else:
                self.study_task = self.bars.add_task(f"[bold]{self.name}[/] points",
                                                     total=self.total, info="")
        elif kind == "end":
            self.done += 1
            o, t = info["outcome"], info["trial"]
            took = duration(time.monotonic() - self.trial.get("t0", time.monotonic()))
            if self.plain:
                value = f" {o.values[0]:.4f}" if o.values else ""
                self.line(f"trial {t.number} "
                          f"{o.state}{value}{' (' + o.reason + ')' if o.reason else ''} in {took}; "
                          f"{self.done}/{self.total} points, eta {self._study_eta()}; "
                          f"{status_line(t.study)}")
            elif self.study_task is not None:
                self.bars.update(self.study_task, advance=1, info=status_line(t.study))
        elif kind == "stopping":
            text = f"{info['failures']} trials in a row failed; stopping (last: {info['last']})"
            self.line(text) if self.plain else self.console.print(f"[red]ablate: {text}[/]")

    def tick(self, study, total: int, done0: int) -> None:
        """--workers N: the study's progress from the storage (the workers train elsewhere)."""
        done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
        if self.plain:
            if done != self.done + done0 or not self.total:
                self.total, self.done = max(total, 0), done - done0
                self.line(f"{self.done}/{self.total} points, eta {self._study_eta()}; "
                          f"{status_line(study)}")
            return
        if self.study_task is None:
            self.study_task = self.bars.add_task(f"[bold]{self.name}[/] points",
                                                 total=max(total, 0), info="")
        self.bars.update(self.study_task, completed=done - done0, info=status_line(study))

    # -- the trial training here ----------------------------------------------------------
    def start(self, number: int | None, values: dict, max_steps: int, repeat: int,
              repeats: int) -> None:
        """A trial's (or, `number` None, a single run's) training starts."""
        rest = ", ".join(f"{k}={v}" for k, v in values.items() if k != "arm")
        label = f"{values['arm']} ({rest})" if "arm" in values and rest else (
            values.get("arm") or rest)
        seed = f" seed {repeat + 1}/{repeats}" if repeats > 1 else ""
        head = f"trial {number} " if number is not None else "run "
        self.trial = {"label": f"{head}{label}{seed}", "max": max_steps,
                      "t0": self.trial.get("t0") if repeat else time.monotonic(),
                      "seed_t0": time.monotonic(), "val": None}
        if self.plain:
            self.line(f"{self.trial['label']}: started ({max_steps} steps)")
        else:
            self.trial_task = self.bars.add_task(f"  {self.trial['label']}",
                                                 total=max_steps, info="")

    def message(self, text: str) -> None:
        self.line(text) if self.plain else self.console.print(f"  {text}")

    def step(self, global_step: int, loss: float | None) -> None:
        if not self.plain and self.trial_task is not None:
            val = f"  val/loss {self.trial['val']:.3f}" if self.trial.get("val") is not None else ""
            info = (f"loss {loss:.3f}" if loss is not None else "") + val
            self.bars.update(self.trial_task, completed=global_step, info=info)

    def validated(self, global_step: int, val_loss: float | None) -> None:
        self.trial["val"] = val_loss
        if self.plain:
            elapsed = time.monotonic() - self.trial["seed_t0"]
            left = ((self.trial["max"] - global_step) * elapsed / global_step if global_step
                    else None)
            val = f"val/loss {val_loss:.4f}" if val_loss is not None else "val/loss ?"
            self.line(f"{self.trial['label']}: step {global_step}/{self.trial['max']} {val} "
                      f"(eta {duration(left)})")

    def stop(self) -> None:
        if not self.plain and self.trial_task is not None:
            self.bars.remove_task(self.trial_task)
        self.trial_task = None
