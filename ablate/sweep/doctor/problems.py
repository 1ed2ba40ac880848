"""What `ablate doctor` reports: the problem kinds, a problem, a trial's row, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# what an MLflow run should end as, by the state of its trial
RUN_STATUS_FOR = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
                  "WAITING": "FAILED", "RUNNING": "FAILED"}

# problem kinds (the `kind` column of the report)
DEAD_TRIAL = "dead_trial"  # RUNNING in Optuna, its worker process on this host is gone
NO_WORKER = "no_worker"  # RUNNING in Optuna, no host/pid recorded (died while starting)
STALE_RUN = "stale_run"  # MLflow run RUNNING although its trial is not running
STALE_PARENT = "stale_parent"  # the study's parent run RUNNING with nothing running
MISSING_RUN = "missing_run"  # COMPLETE trial without an MLflow run
ORPHAN_RUN = "orphan_run"  # MLflow run of the study that no trial knows
FINISHED_RUN_FAILED_TRIAL = "finished_run_failed_trial"  # run FINISHED, its trial FAIL
MISSING_OBJECTIVE = "missing_objective"  # COMPLETE trial without its objective value or metric
DUPLICATE_RUN = "duplicate_run"  # FINISHED runs of one (configuration, seed): one sample twice


@dataclass
class Problem:
    kind: str
    detail: str
    fix: str  # what `--fix` does about it ("" when it cannot: reported only)
    trial: int | None = None
    run_id: str | None = None


@dataclass
class TrialRow:
    number: int
    state: str
    params: dict[str, Any]
    host: str | None
    pid: int | None
    worker: str  # alive | dead | other host | unknown | "" (not running)
    run_ids: list[str]
    run_status: dict[str, str]  # run id -> MLflow status ("missing" when not in the store)
    note: str = ""


@dataclass
class Report:
    study: str
    storage: str  # masked
    tracking_uri: str  # masked
    states: dict[str, int]
    trials: list[TrialRow]
    runs: dict[str, str]  # run id -> status, every run of the study
    parent_run_id: str | None
    parent_status: str | None
    problems: list[Problem] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # what fix() did
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0: consistent; 1: problems found and not (or not all) fixed."""
        return 0 if self.ok else 1
