"""Durable stores: a crash or a full disk never makes a study unreadable or loses a finished
trial, and a killed run keeps its metrics up to its last checkpoint.

Faults are real: half-written records in Optuna's own journal files, a tmpfs that fills up
under a running `ablate sweep`, SIGKILL of a real sweep process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from ablate.cli import main
from ablate.sweep.doctor import diagnose
from ablate.sweep.journal import DurableJournalBackend, repair
from ablate.sweep.study import make_storage
from tests.mlflow_helpers import all_runs, store
from tests.reliability.test_doctor import LONG, _reap, _study, _sweep_file, fast, small_tmpfs  # noqa: F401 - fast: a fixture

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _plain(path, name: str):
    """The study as Optuna alone reads it (no repair): what must always work."""
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


def _study_on_disk(path, name: str, n: int = 3) -> list[tuple]:
    """A journal written by Optuna through ablate's storage: n COMPLETE trials."""
    study = optuna.create_study(study_name=name, storage=make_storage(str(path), name))
    for i in range(n):
        t = study.ask()
        t.suggest_float("x", 0.0, 1.0)
        t.set_user_attr("note", "a user attr with {braces} and \"quotes\"")
        study.tell(t, float(i))
    return _finished(_plain(path, name))


def _finished(study) -> list[tuple]:
    return [(t.number, t.params, t.values) for t in study.get_trials()
            if t.state.name == "COMPLETE"]


def _torn(record: bytes) -> bytes:
    """What a write cut short leaves of a record: its first half, no newline."""
    return record[: len(record) // 2]


def _fill(folder) -> None:
    """Write a file until the disk says ENOSPC."""
    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9):  # then smaller pieces into what is left
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


# -- the journal file: fast, real Optuna files ---------------------------------------------------
def test_a_torn_tail_is_cut_under_the_journals_lock_and_kept_aside(tmp_path, capfd):
    path = tmp_path / "t.journal"
    finished = _study_on_disk(path, "t")
    clean = path.read_bytes()
    fragment = _torn(clean.splitlines(keepends=True)[-1])
    with open(path, "ab") as f:
        f.write(fragment)

    lock = JournalFileSymlinkLock(str(path))  # what Optuna's writers take
    lock.acquire()
    opened = threading.Thread(target=make_storage, args=(str(path), "t"))
    opened.start()
    opened.join(timeout=1.5)
    assert opened.is_alive() and path.read_bytes().endswith(fragment)  # waits for the lock
    lock.release()
    opened.join(timeout=30)
    assert not opened.is_alive()

    assert path.read_bytes() == clean
    (backup,) = tmp_path.glob("t.journal.torn-*")
    assert backup.read_bytes() == fragment + b"\n"
    err = capfd.readouterr().err
    assert f"cut {len(fragment)} bytes" in err and str(backup) in err and len(err.splitlines()) == 1
    assert _finished(_plain(path, "t")) == finished
    assert repair(path) is None  # sound now: nothing more to do


def test_appending_after_a_torn_tail_keeps_the_journal_readable(tmp_path):
    """The Optuna issue 5138 sequence: a torn tail, then another process appends (plain
    Optuna glues its record to the fragment; ablate's backend cuts the fragment first)."""
    path = tmp_path / "a.journal"
    finished = _study_on_disk(path, "a")
    study = optuna.load_study(study_name="a", storage=make_storage(str(path), "a"))  # opened before
    with open(path, "ab") as f:
        f.write(_torn(path.read_bytes().splitlines(keepends=True)[-1]))  # another writer dies
    t = study.ask()
    t.suggest_float("x", 0.0, 1.0)
    study.tell(t, 9.0)
    assert _finished(_plain(path, "a")) == finished + [(3, t.params, [9.0])]


def test_a_poisoned_journal_is_repaired_by_doctor_fix(ablate_home, capsys):
    """A fragment glued to a good record in the middle of the file (what optuna#5138 leaves:
    Optuna raises JSONDecodeError on every read): `ablate doctor --fix` cuts the fragment out,
    keeps it aside, and every complete record is read again."""
    path = ablate_home / "optuna" / "p.journal"
    path.parent.mkdir(parents=True)
    finished = _study_on_disk(path, "p", n=4)
    lines = path.read_bytes().splitlines(keepends=True)
    fragment = _torn(lines[-1])
    path.write_bytes(b"".join(lines[:5]) + fragment + b"".join(lines[5:]))
    with pytest.raises(json.JSONDecodeError):
        _plain(path, "p").get_trials()

    assert main(["doctor", "--study", "p", "--fix"]) == 0
    out = capsys.readouterr().out.replace("\n", "")
    assert "fixed: journal" in out and f"cut {len(fragment)} bytes" in out
    assert path.read_bytes() == b"".join(lines)  # every record, in order, nothing else
    (backup,) = path.parent.glob("p.journal.torn-*")
    assert backup.read_bytes() == fragment + b"\n"
    assert _finished(_plain(path, "p")) == finished


def test_an_append_that_fills_the_disk_takes_its_half_record_back(tmp_path):
    """ENOSPC mid-append (a real one: a tmpfs of 64 KiB): the append fails, and the journal is
    as it was before it: no half record for the next writer to glue its own to."""
    folder = tmp_path / "small"
    with small_tmpfs(folder, "64k"):
        path = folder / "f.journal"
        finished = _study_on_disk(path, "f")
        filler = folder / "filler"
        _fill(folder)  # every free block (the journal's last one has room left in it)
        size = path.stat().st_size
        backend = DurableJournalBackend(str(path))
        big = {"op_code": 8, "worker_id": "w", "trial_id": 0, "user_attr": {"k": "v" * 20000}}
        with pytest.raises(OSError, match="No space left"):
            backend.append_logs([big])
        assert path.stat().st_size == size and path.read_bytes().endswith(b"\n")
        assert _finished(_plain(path, "f")) == finished
        filler.unlink()
        backend.append_logs([big])  # space again: the next append lands on a clean line
        assert _finished(_plain(path, "f")) == finished


# -- the metrics logger: a real MLflow store ----------------------------------------------------
def test_metrics_reach_mlflow_every_few_seconds_without_a_flush(tmp_path):
    from mlflow.tracking import MlflowClient

    from ablate.tracking.logger import FLUSH_SECS, MlflowRunLogger

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("x")).info.run_id
    logger = MlflowRunLogger(client, run, flush_secs=0.5)

    def steps() -> list[int]:
        return [m.step for m in client.get_metric_history(run, "train/loss")]

    logger.log_metrics({"train/loss": 1.0}, step=1)
    assert steps() == []  # batched: a step costs no MLflow call
    time.sleep(0.6)
    logger.log_metrics({"train/loss": 0.9}, step=2)
    assert steps() == [1, 2]  # due: written on this call, no flush() needed
    logger.log_metrics({"train/loss": 0.9}, step=2)  # the same point again (FlushMetrics)
    logger.flush()
    assert steps() == [1, 2] and FLUSH_SECS <= 10


# -- real sweeps ----------------------------------------------------------------------------------
def _run(argv: list[str], home, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ABLATE_HOME": str(home), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "ablate", *argv], env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def _snapshot(name: str, home) -> dict:
    """COMPLETE trials and their FINISHED runs: what no fault may lose or change."""
    runs = {r.info.run_id: r for r in all_runs(home)}
    out = {}
    for t in _study(name).get_trials():
        if t.state.name == "COMPLETE":
            rid = (t.user_attrs.get("mlflow_run_id")
                   or (t.user_attrs.get("mlflow_run_ids") or [None])[0])
            out[t.number] = (t.params, t.values, rid, runs[rid].info.status, runs[rid].data.metrics)
    return out


@pytest.mark.slow
def test_a_torn_journal_tail_then_the_same_sweep_completes_the_study(ablate_home, fast, tmp_path):  # noqa: F811
    path = _sweep_file(tmp_path, "torn", 2)
    assert main(["sweep", path, *fast]) == 0
    before = _snapshot("torn", ablate_home)
    journal = ablate_home / "optuna" / "torn.journal"
    with open(journal, "ab") as f:  # a crash mid-append
        f.write(_torn(journal.read_bytes().splitlines(keepends=True)[-1]))

    rerun = _run(["sweep", path, *fast, "--n-trials", "3"], ablate_home)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert ("half-written record" in rerun.stderr
            and list(journal.parent.glob("torn.journal.torn-*")))
    after = _plain(journal, "torn").get_trials()  # Optuna alone reads it
    assert sum(t.state.name == "COMPLETE" for t in after) == 3
    assert {n: s for n, s in _snapshot("torn", ablate_home).items() if n in before} == before


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, errors
    return errors[0]


# where a tmpfs cannot be mounted: Python's file writes and SQLite's growth under ABLATE_HOME
# fail as on a full disk while the file $ABLATE_TEST_FULL exists (loaded by every process)
SHIM = """
import builtins, errno, os, sqlite3

_HOME = os.path.realpath(os.environ["ABLATE_HOME"]) + os.sep
_FLAG = os.environ["ABLATE_TEST_FULL"]
_open = builtins.open


def _full(file, mode) -> bool:
    return (isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+")
            and os.path.exists(_FLAG) and os.path.realpath(os.fsdecode(file)).startswith(_HOME))


def open(file, mode="r", *args, **kwargs):
    if _full(file, mode):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(file))
    return _open(file, mode, *args, **kwargs)


def _no_growth(dbapi_connection, record, proxy=None):  # SQLite's own SQLITE_FULL
    if isinstance(dbapi_connection, sqlite3.Connection):
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        limit = pages if os.path.exists(_FLAG) else 2147483646
        dbapi_connection.execute(f"PRAGMA max_page_count = {limit}")


builtins.open = open
from sqlalchemy import event  # noqa: E402
from sqlalchemy.pool import Pool  # noqa: E402

event.listen(Pool, "checkout", _no_growth)
"""


@contextlib.contextmanager
def _disk_that_fills(home, tmp_path, how: str):
    """-> (env for the processes, fill(), free()): `home` on a 16 MiB tmpfs, or the SHIM."""
    if how == "tmpfs":
        with small_tmpfs(home, "16m"):
            yield {}, lambda: _fill(home), lambda: (home / "filler").unlink()
        return
    (tmp_path / "shim").mkdir()
    (tmp_path / "shim" / "sitecustomize.py").write_text(SHIM)
    flag = tmp_path / "disk-is-full"
    path = os.pathsep.join(p for p in (str(tmp_path / "shim"), os.environ.get("PYTHONPATH")) if p)
    yield {"PYTHONPATH": path, "ABLATE_TEST_FULL": str(flag)}, flag.touch, flag.unlink


@pytest.mark.slow
@pytest.mark.parametrize("how", ["tmpfs", "shim"])
def test_full_disk_under_the_stores_stops_in_one_line_and_the_study_resumes(how, ablate_home,
                                                                            tmp_path, capsys):
    """ABLATE_HOME (journal, mlflow.db, checkpoints) on a disk that fills up while a trial
    trains: the sweep ends with one line and a non-zero code, the finished trial stays
    readable and unchanged, a re-run on the full disk says the same, and once space is freed
    (and `ablate doctor --fix` tidied up, as the README says) the same command completes the
    study."""
    path = _sweep_file(tmp_path, "full", 3)
    with _disk_that_fills(ablate_home, tmp_path, how) as (shim_env, fill, free):
        env = {**os.environ, "ABLATE_HOME": str(ablate_home), **shim_env}
        proc = subprocess.Popen([sys.executable, "-m", "ablate", "sweep", path, *LONG], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
                journal = ablate_home / "optuna" / "full.journal"
                if (journal.exists()
                        and any(t.state.name == "COMPLETE" for t in _plain(journal, "full").trials)
                        and any((ablate_home / "checkpoints").glob("full/trial-*/*/last.ckpt"))):
                    break  # the first trial is done, the next one is training
            fill()
            err = proc.communicate(timeout=300)[1]
        finally:
            _reap(proc)
        assert proc.returncode == 1
        assert _one_error_line(err).startswith("error: the disk is full"), err[-3000:]
        before = _snapshot("full", ablate_home)
        assert len(before) >= 1 and all(s[3] == "FINISHED" for s in before.values())
        assert _plain(ablate_home / "optuna" / "full.journal", "full").get_trials()  # readable

        again = _run(["sweep", path, *LONG], ablate_home, shim_env)  # still full
        assert (again.returncode == 1
                and _one_error_line(again.stderr).startswith("error: the disk is full"))

        free()  # space again: the README's steps
        left = sorted({p.kind for p in diagnose("full").problems})
        reasons = sorted({t.user_attrs.get("fail_reason", "")[:90]
                          for t in _study("full").get_trials()
                          if t.state.name == "FAIL"})
        doctor = _run(["doctor", "--study", "full", "--fix"], ablate_home, shim_env)
        assert doctor.returncode == 0, doctor.stdout[-3000:]
        rerun = _run(["sweep", path, *LONG], ablate_home, shim_env)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        after = _snapshot("full", ablate_home)
        assert len(after) == 3 and {n: after[n] for n in before} == before
        assert diagnose("full").ok
        with capsys.disabled():  # what the fault left, for the record
            print(f"\nfull disk ({how}): {err.strip().splitlines()[-1]}\n  then: "
                  f"{again.stderr.strip().splitlines()[-1]}\n  kept {len(before)} finished "
                  f"trial(s); failed trials: {reasons or 'none'}; doctor found {left or 'nothing'}")


@pytest.mark.slow
def test_sigkill_mid_trial_keeps_the_curve_up_to_the_last_checkpoint(ablate_home, tmp_path):
    """SIGKILL of a real sweep right after a trial's checkpoint appears: its MLflow run's
    train/loss history reaches the step that checkpoint holds (no flush after the kill). A
    dense model logs a few metrics a step: far from any batch-size flush."""
    path = _sweep_file(tmp_path, "kill", 1)
    env = {**os.environ, "ABLATE_HOME": str(ablate_home)}
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "sweep", path, *LONG,
                             "model.ffn=dense"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((ablate_home / "checkpoints").glob("kill/trial-*/*/last.ckpt")):
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _reap(proc)
    (ckpt,) = (ablate_home / "checkpoints").glob("kill/trial-*/*/last.ckpt")
    step = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]  # our own file
    (run,) = [r for r in all_runs(ablate_home) if r.data.tags.get("ablate.trial") == "0"]
    assert run.info.status == "RUNNING"  # killed: nothing closed it
    history = store(ablate_home).get_metric_history(run.info.run_id, "train/loss")
    assert step >= 5 and history and max(m.step for m in history) >= step, (step, history)
