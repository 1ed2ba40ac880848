"""What ablate keeps on an Optuna study and its trials (their user attributes), typed: the one
place that spells their keys, and the objective's `metric:direction` text.

On a trial (`TrialRecord.of(trial)` reads them all; `write(trial, ...)` sets them):
    revision       the study revision it ran under (`--extend` makes a new one)
    attempt        1 for a point's first trial, +1 for each retry
    retry_of       the first attempt's number: keys the checkpoint directory across retries
    duplicate_of   a sampler's repeat of another trial's point (bookkeeping, never trained)
    fail_reason    why it failed; `final`: retrying would fail the same way;
                   `environmental`: the machine failed it (a full or read-only disk, a lost
                   connection), not the point: its retry spends no attempt
    pid, host      the worker process training it (the reaper checks it is still alive)
    run_name, run_ids   its MLflow runs, recorded as soon as each exists
    repeats_done   {seed: {"run_id", "metrics"} or {"run_id", "diverged"}}, finished seeds
    metrics, metrics_per_repeat   its summary metrics, mean over seeds and per seed
    stage          "tune" for a trial of a study's tuning stage, else absent
On the study: the MLflow parent run's id, the revisions (`Revision`: number, fingerprint and
the definition, see `fingerprint.py`) and the `expect:` hypotheses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# trial attributes (the names Optuna stores: studies written before this module keep working)
_KEYS = {"revision": "revision", "attempt": "attempt", "retry_of": "retry_of",
         "duplicate_of": "duplicate_of", "fail_reason": "fail_reason", "final": "final",
         "pid": "pid", "host": "host", "run_name": "run_name", "run_ids": "mlflow_run_ids",
         "repeats_done": "repeats_done", "metrics": "metrics",
         "metrics_per_repeat": "metrics_per_repeat", "stage": "stage",
         "environmental": "environmental"}
_FIRST_RUN = "mlflow_run_id"  # the first of run_ids, for readers of older studies
# study attributes
PARENT_RUN_ID = "mlflow_parent_run_id"
REVISIONS = "revisions"
EXPECT = "expect"


@dataclass(frozen=True)
class TrialRecord:
    """A trial's user attributes, with their defaults."""

    revision: int = 1
    attempt: int = 1
    retry_of: int | None = None
    duplicate_of: int | None = None
    fail_reason: str | None = None
    final: bool = False
    pid: int | None = None
    host: str | None = None
    run_name: str | None = None
    run_ids: list[str] = field(default_factory=list)
    repeats_done: dict[str, dict] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_per_repeat: list[dict] = field(default_factory=list)
    stage: str | None = None
    environmental: bool = False

    @classmethod
    def of(cls, trial) -> TrialRecord:
        ua = trial.user_attrs
        ids = list(ua.get(_KEYS["run_ids"]) or ([ua[_FIRST_RUN]] if ua.get(_FIRST_RUN) else []))
        return cls(
            revision=int(ua.get("revision", 1)), attempt=int(ua.get("attempt", 1)),
            retry_of=_int(ua.get("retry_of")), duplicate_of=_int(ua.get("duplicate_of")),
            fail_reason=ua.get("fail_reason"), final=bool(ua.get("final", False)),
            pid=_int(ua.get("pid")), host=ua.get("host"), run_name=ua.get("run_name"),
            run_ids=ids, repeats_done=dict(ua.get("repeats_done") or {}),
            metrics=dict(ua.get("metrics") or {}),
            metrics_per_repeat=list(ua.get("metrics_per_repeat") or []), stage=ua.get("stage"),
            environmental=bool(ua.get("environmental", False)))

    @property
    def is_point(self) -> bool:
        """A trial of a point (not a sampler's duplicate told back as bookkeeping)."""
        return self.duplicate_of is None

    @property
    def has_worker(self) -> bool:
        """Its worker recorded itself (pid first, then host: the reaper needs both)."""
        return self.pid is not None and self.host is not None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def write(trial, **values: Any) -> None:
    """Set attributes of a live trial by their `TrialRecord` names (a typo is a KeyError);
    `run_ids` also records the first one under its older single-run key."""
    for name, value in values.items():
        trial.set_user_attr(_KEYS[name], value)
        if name == "run_ids" and value:
            trial.set_user_attr(_FIRST_RUN, value[0])


def write_to_storage(storage, trial_id: int, **values: Any) -> None:
    """`write` for a trial this process does not hold (the reaper, the doctor)."""
    for name, value in values.items():
        storage.set_trial_user_attr(trial_id, _KEYS[name], value)


def queued(**values: Any) -> dict[str, Any]:
    """The user attributes of a trial to enqueue, by their `TrialRecord` names."""
    return {_KEYS[name]: value for name, value in values.items()}


# -- the study ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Revision:
    number: int
    fingerprint: str
    definition: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"revision": self.number, "fingerprint": self.fingerprint,
                "definition": self.definition}


def revisions(study) -> list[Revision]:
    return [Revision(int(r["revision"]), r.get("fingerprint", ""), r.get("definition") or {})
            for r in study.user_attrs.get(REVISIONS) or []]


def save_revisions(study, revs: list[Revision]) -> None:
    study.set_user_attr(REVISIONS, [r.as_dict() for r in revs])


def newest_revision(study) -> int:
    revs = revisions(study)
    return revs[-1].number if revs else 1


def parent_run_id(study) -> str | None:
    return study.user_attrs.get(PARENT_RUN_ID)


def expectations(study) -> list[dict]:
    """The study's `expect:` lines as stored (`Expectation.as_dict`)."""
    return list(study.user_attrs.get(EXPECT) or [])


# -- the objective's text ------------------------------------------------------------------------
DIRECTIONS = ("minimize", "maximize")


def objective_text(metric: str, direction: str) -> str:
    """`metric:direction`, as the study's revisions and its parent run's params keep it."""
    return f"{metric}:{direction}"


def parse_objective(text: str) -> tuple[str, str]:
    """`metric:direction` -> (metric, direction); a text without a valid direction is the
    metric itself, minimized (what studies recorded before directions were written)."""
    metric, sep, direction = text.rpartition(":")
    if not sep or direction not in DIRECTIONS:
        return text, "minimize"
    return metric, direction
