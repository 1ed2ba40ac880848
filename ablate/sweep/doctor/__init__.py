"""`ablate doctor --study NAME [--fix]`: is the study's Optuna state consistent with MLflow?

After a crash (SIGKILL of a worker, power loss, a full disk, Ctrl-C at the wrong moment) a
study can be left with

- RUNNING trials whose worker process (same host, user attr `pid`) is gone, or lives on as
  an orphan whose `ablate sweep` is gone,
- MLflow child runs still RUNNING although their trial ended (or died),
- the study's parent run RUNNING with no sweep or worker left,
- COMPLETE trials without an MLflow run, or MLflow runs that belong to no trial,
- MLflow runs FINISHED although their trial FAILED (they look like results),
- COMPLETE trials without their objective (no value, or the metric not in their run),
- two FINISHED runs of the same configuration and seed (one sample counted twice),
- a journal file with half-written records (repaired whenever the study is opened:
  `ablate.sweep.journal`; the doctor says what was cut and where it is kept).

The parts: `read` (the stores and /proc, never creating anything) gathers a `Snapshot`;
`diagnosis` turns it into a `Report` (pure functions: no I/O); `repair` fixes
what can be fixed; `ablate/cli/doctor.py` prints the report.

```python
from ablate.sweep.doctor import diagnose, fix

report = diagnose("quickstart")          # default stores under $ABLATE_HOME
print(report.ok, [p.kind for p in report.problems])
report = fix("quickstart")               # -> the report after the repair; report.actions
```
"""

from ablate.sweep.doctor.diagnosis import (
    DEAD_TRIAL,
    DUPLICATE_RUN,
    FINISHED_RUN_FAILED_TRIAL,
    MISSING_OBJECTIVE,
    MISSING_RUN,
    NO_WORKER,
    ORPHAN_RUN,
    ORPHAN_WORKER,
    RETRY_PENDING,
    RUN_STATUS_FOR,
    STALE_PARENT,
    STALE_RUN,
    Problem,
    Report,
    Snapshot,
    TrialRow,
    diagnose_snapshot,
)
from ablate.sweep.doctor.read import diagnose
from ablate.sweep.doctor.repair import fix

__all__ = ["DEAD_TRIAL", "DUPLICATE_RUN", "FINISHED_RUN_FAILED_TRIAL", "MISSING_OBJECTIVE",
           "MISSING_RUN", "NO_WORKER", "ORPHAN_RUN", "ORPHAN_WORKER", "RETRY_PENDING",
           "RUN_STATUS_FOR", "STALE_PARENT", "STALE_RUN", "Problem", "Report", "Snapshot",
           "TrialRow", "diagnose", "diagnose_snapshot", "fix"]
