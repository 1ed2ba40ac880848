"""Every `ablate.*` tag an MLflow run carries, spelled once, and the tags every run gets.

Where a run came from:  STUDY, TRIAL, POINT, REVISION, REPEAT, ARM, STAGE, WORKER, HOST, GIT_SHA,
                        DATA_FINGERPRINT, KIND (`study` / `claims` for the parent runs),
                        ROLE (`dense_parent`: upcycling's shared dense model)
How it ended:           STATE (COMPLETE, PRUNED, FAILED, KILLED), FAIL_REASON, RESUMED_FROM
                        (the checkpoint) and RESUMED_AT (its step), RESUME_SKIPPED
What it is, when it is not the default:  INIT, INIT_WEIGHTS, UPCYCLED_FROM, UPCYCLE_NOISE,
                        DENSE_PARENT_STEPS, DENSE_PARENT_SHA, FROZEN, FROZEN_PARAMS,
                        FROZEN_ROUTER, NONCAUSAL_ROUTING
A study's parent run:   CLAIM.format(i) (the verdict of expectation i), BUDGET_TREND and
                        BUDGET_CROSSOVER .format(i) (its trend across budgets, the
                        extrapolated crossover in tokens or "none")
"""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

STUDY = "ablate.study"
TRIAL = "ablate.trial"
POINT = "ablate.point"  # the trial number of its point's first attempt (retries share it)
REVISION = "ablate.revision"
REPEAT = "ablate.repeat"
ARM = "ablate.arm"
STAGE = "ablate.stage"
WORKER = "ablate.worker"
HOST = "ablate.host"
GIT_SHA = "ablate.git_sha"
DATA_FINGERPRINT = "ablate.data_fingerprint"
KIND = "ablate.kind"
ROLE = "ablate.role"
STATE = "ablate.state"
FAIL_REASON = "ablate.fail_reason"
RESUMED_FROM = "ablate.resumed_from"
RESUMED_AT = "ablate.resumed_at_step"
RESUME_SKIPPED = "ablate.resume_skipped"
INIT = "ablate.init"
INIT_WEIGHTS = "ablate.init_weights"
UPCYCLED_FROM = "ablate.upcycled_from"
UPCYCLE_NOISE = "ablate.upcycle_noise"
DENSE_PARENT_STEPS = "ablate.dense_parent_steps"
DENSE_PARENT_SHA = "ablate.dense_parent_sha"
FROZEN = "ablate.frozen"
FROZEN_PARAMS = "ablate.frozen_params"
FROZEN_ROUTER = "ablate.frozen_router"
NONCAUSAL_ROUTING = "ablate.noncausal_routing"
CLAIM = "ablate.claim.{}"
BUDGET_TREND = "ablate.budget.{}.trend"
BUDGET_CROSSOVER = "ablate.budget.{}.crossover"

DENSE_PARENT = "dense_parent"  # the ROLE of upcycling's dense parents: not a trial's result


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def standard_tags(extra: dict[str, Any] | None = None) -> dict[str, str]:
    """HOST, GIT_SHA and WORKER, plus `extra` (values as strings, None left out)."""
    tags = {HOST: socket.gethostname(), GIT_SHA: git_sha(),
            WORKER: os.environ.get("ABLATE_WORKER", "0")}
    tags.update({k: str(v) for k, v in (extra or {}).items() if v is not None})
    return tags
