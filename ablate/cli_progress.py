"""What a sweep shows in the terminal while it runs (the CLI layer: the sweep code only
reports events). A bar for the study's points, and one for the trial that is training."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def status_line(study) -> str:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("duplicate_of") is None:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
    best = ""
    if len(study.directions) == 1 and counts.get("COMPLETE"):
        best = f"  best {study.best_value:.4f} (trial {study.best_trial.number})"
    return (f"done {counts.get('COMPLETE', 0)} pruned {counts.get('PRUNED', 0)} "
            f"failed {counts.get('FAIL', 0)} running {counts.get('RUNNING', 0)}{best}")


class SweepDisplay:
    """Rich progress for one sweep. `events` is the TrialLoop's event sink; the object
    itself is the per-trial progress the objective drives (start / hook / stop)."""

    def __init__(self, console: Console, study_name: str):
        self.console, self.name = console, study_name
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console)
        self.study_task = None
        self.trial_task = None

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        self.bars.__exit__(*exc)

    # -- the study ------------------------------------------------------------------------
    def events(self, kind: str, **info) -> None:
        if kind == "open":
            self.study_task = self.bars.add_task(f"[bold]{self.name}[/] points",
                                                 total=max(info["left"], 0), info="")
        elif kind == "end" and self.study_task is not None:
            self.bars.update(self.study_task, advance=1, info=status_line(info["trial"].study))
        elif kind == "stopping":
            self.console.print(f"[red]ablate: {info['failures']} trials in a row failed; stopping "
                               f"(last: {info['last']})[/]")

    def tick(self, study, total: int, done0: int) -> None:
        """--workers N: the study bar from the storage (the workers train elsewhere)."""
        if self.study_task is None:
            self.study_task = self.bars.add_task(f"[bold]{self.name}[/] points", total=max(total, 0), info="")
        done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
        self.bars.update(self.study_task, completed=done - done0, info=status_line(study))

    # -- the trial that trains here -------------------------------------------------------
    def start(self, number: int, values: dict, max_steps: int, repeat: int, repeats: int) -> None:
        label = values.get("arm", "")
        seed = f" seed {repeat + 1}/{repeats}" if repeats > 1 else ""
        self.trial_task = self.bars.add_task(f"  trial {number} {label}{seed}", total=max_steps, info="")

    def hook(self):
        return self.bars, self.trial_task

    def stop(self) -> None:
        if self.trial_task is not None:
            self.bars.remove_task(self.trial_task)
            self.trial_task = None
