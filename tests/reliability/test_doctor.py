"""Faults and `ablate doctor`: after SIGKILL / SIGTERM / Ctrl-C of workers or of the whole
sweep, or a full disk for checkpoints, `ablate doctor --study NAME` reports the state,
`--fix` reconciles Optuna and MLflow (stale RUNNING trials and runs closed, nothing finished
lost), and re-running the sweep completes the study."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from ablate.cli import main
from ablate.sweep.doctor import (
    DEAD_TRIAL,
    DUPLICATE_RUN,
    FINISHED_RUN_FAILED_TRIAL,
    MISSING_OBJECTIVE,
    MISSING_RUN,
    NO_WORKER,
    ORPHAN_RUN,
    STALE_PARENT,
    STALE_RUN,
    diagnose,
    fix,
)
from ablate.sweep.study import make_storage
from tests.mlflow_helpers import all_runs, store
from tests.proc_helpers import command_lines

LR = [0.001, 0.002, 0.003, 0.004]


@pytest.fixture
def fast(tiny):
    """tiny, 2 steps, a validation (and a checkpoint) after each."""
    return [o for o in tiny if not o.startswith(("trainer.max_steps", "trainer.val_every"))] + [
        "trainer.max_steps=2", "trainer.val_every=1"]


def _doctor(argv: list[str]) -> int:
    return main(["doctor", *argv])


def _sweep_file(tmp_path, name: str, n_trials: int) -> str:
    spec = {"study": name, "base": {"model": {"ffn": "moe"}}, "space": {"optim.lr": LR},
            "sampler": {"name": "bruteforce", "seed": 0}, "n_trials": n_trials}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _study(name: str):
    return optuna.load_study(study_name=name, storage=make_storage(None, name))


def _finished_snapshot(name: str, home) -> tuple[dict, dict]:
    """COMPLETE trials and FINISHED runs: what must survive any repair unchanged."""
    trials = {t.number: (t.params, t.values, t.user_attrs.get("mlflow_run_id"))
              for t in _study(name).get_trials() if t.state.name == "COMPLETE"}
    runs = {r.info.run_id: (r.info.end_time, r.data.metrics, r.data.tags.get("ablate.state"))
            for r in all_runs(home) if r.info.status == "FINISHED"}
    return trials, runs


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _assert_consistent(name: str, home, n_complete: int) -> None:
    trials = _study(name).get_trials()
    assert sum(t.state.name == "COMPLETE" for t in trials) == n_complete
    assert not [t.number for t in trials if t.state.name == "RUNNING"]
    assert not [r.info.run_id for r in all_runs(home) if r.info.status == "RUNNING"]
    report = diagnose(name)
    assert report.ok, [p.detail for p in report.problems]


# -- the crash states, forged on a real study: fast and exact ----------------------------------
def test_doctor_reports_and_fixes_a_crashed_study(ablate_home, fast, tmp_path, capsys, monkeypatch):
    path = _sweep_file(tmp_path, "crash", 2)
    assert main(["sweep", path, *fast]) == 0
    report = diagnose("crash")
    assert report.ok and report.exit_code == 0 and report.states == {"COMPLETE": 2}
    assert _doctor(["--study", "crash"]) == 0
    assert "consistent" in capsys.readouterr().out

    # what SIGKILL of everything mid-trial leaves: a RUNNING trial of a dead worker with a
    # RUNNING run (and a second repeat's run already FINISHED), the parent RUNNING, and a
    # RUNNING run that never made it into the trial's attrs
    study, client = _study("crash"), store(ablate_home)
    parent = study.user_attrs["mlflow_parent_run_id"]
    exp = client.get_run(parent).info.experiment_id
    study.enqueue_trial({"optim.lr": LR[2]})  # the point it was training (not done yet)
    t = study.ask()
    t.suggest_categorical("optim.lr", LR)
    tags = {"ablate.study": "crash", "ablate.trial": str(t.number), "mlflow.parentRunId": parent}
    stale = client.create_run(exp, run_name="stale", tags=tags).info.run_id
    done = client.create_run(exp, run_name="done-repeat", tags=tags).info.run_id
    client.log_metric(done, "val/loss", 5.0)
    client.set_terminated(done, "FINISHED")
    # the finished repeat is recorded as the trial's done seed: its retry carries it
    for key, value in {"host": socket.gethostname(), "pid": _dead_pid(),
                       "mlflow_run_ids": [stale, done], "mlflow_run_id": stale,
                       "repeats_done": {"1": {"run_id": done,
                                              "metrics": {"val/loss": 5.0}}}}.items():
        t.set_user_attr(key, value)
    orphan = client.create_run(exp, run_name="orphan",
                               tags={**tags, "ablate.trial": "99"}).info.run_id
    client.update_run(parent, status="RUNNING")
    starting = study.ask()  # a worker that died before it could record its pid
    monkeypatch.setattr("ablate.sweep.doctor.diagnosis.CLOSE_AFTER_S", -1.0)
    before = _finished_snapshot("crash", ablate_home)

    report = diagnose("crash")
    kinds = sorted(p.kind for p in report.problems)
    assert kinds == sorted([DEAD_TRIAL, STALE_RUN, ORPHAN_RUN, STALE_PARENT, NO_WORKER]), kinds
    assert report.exit_code == 1
    assert _doctor(["--study", "crash"]) == 1
    out = capsys.readouterr().out
    assert "dead_trial" in out and "--fix" in out

    assert _doctor(["--study", "crash", "--fix"]) == 0
    out = capsys.readouterr().out
    assert "consistent" in out and "fixed:" in out
    trials = _study("crash").get_trials()
    assert trials[t.number].state.name == "FAIL"
    assert trials[t.number].user_attrs["fail_reason"] == "worker process died"
    assert trials[starting.number].state.name == "WAITING"  # never started: queued as it is
    (retry,) = [x for x in trials if x.user_attrs.get("retry_of") == t.number]
    assert retry.state.name == "WAITING"
    assert retry.system_attrs["fixed_params"] == trials[t.number].params  # same point again
    assert client.get_run(stale).info.status == "FAILED"
    assert client.get_run(stale).data.tags["ablate.state"] == "FAILED"
    assert client.get_run(orphan).info.status == "FAILED"
    assert client.get_run(parent).info.status == "KILLED"
    assert client.get_run(done).info.status == "FINISHED"  # never changed, though its trial died
    assert _finished_snapshot("crash", ablate_home) == before  # nothing finished lost or changed
    # a FINISHED run no trial knows is a result: reported, never changed or deleted
    lone = client.create_run(exp, run_name="lone", tags={**tags, "ablate.trial": "98"}).info.run_id
    client.set_terminated(lone, "FINISHED")
    report = fix("crash")
    assert [p.kind for p in report.problems] == [ORPHAN_RUN] and report.problems[0].fix == ""
    assert report.exit_code == 1 and client.get_run(lone).info.status == "FINISHED"
    client.delete_run(lone)  # the user's decision
    assert diagnose("crash").ok

    # re-running the sweep runs the queued retry with the dead trial's params and completes
    assert main(["sweep", path, *fast, "--n-trials", "4"]) == 0
    trials = _study("crash").get_trials()
    assert trials[retry.number].state.name == "COMPLETE"
    _assert_consistent("crash", ablate_home, 4)
    assert _finished_snapshot("crash", ablate_home)[1].items() >= before[1].items()


def test_full_disk_for_checkpoints_fails_trials_cleanly_then_resumes(ablate_home, fast, tmp_path,
                                                                     monkeypatch):
    """ENOSPC while Lightning writes a checkpoint: the trial fails with the reason in Optuna and
    MLflow, nothing stays RUNNING, doctor is happy; with space again the sweep completes."""
    from lightning.fabric.plugins.io import torch_io

    def no_space(checkpoint, filepath):
        raise OSError(errno.ENOSPC, "No space left on device", str(filepath))

    path = _sweep_file(tmp_path, "disk", 2)
    with monkeypatch.context() as m:  # (monkeypatch.undo would also unset ABLATE_HOME)
        m.setattr(torch_io, "_atomic_save", no_space)
        # a disk that stays full over more re-runs than a point has attempts: none is spent
        for _ in range(5):
            assert main(["sweep", path, *fast]) == 1  # failed trials: the study is not complete
    trials = _study("disk").get_trials()
    assert trials and all(t.state.name == "FAIL" for t in trials)
    assert {t.user_attrs.get("attempt", 1) for t in trials} == {1}
    assert all("No space left on device" in t.user_attrs["fail_reason"] for t in trials)
    runs = [r for r in all_runs(ablate_home) if "ablate.trial" in r.data.tags]
    assert runs and all(r.info.status == "FAILED" for r in runs)
    assert all("No space left" in r.data.tags["ablate.fail_reason"] for r in runs)
    report = diagnose("disk")  # the machine failed the trial: no attempt spent, said so
    assert {p.kind for p in report.problems} == {"retry_pending"}, report.problems
    assert all(t.user_attrs.get("environmental") for t in trials)

    assert main(["sweep", path, *fast]) == 0  # space again
    _assert_consistent("disk", ablate_home, 2)


# -- real processes, real signals ------------------------------------------------------------
LONG = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64",
        "data.max_docs=30", "data.block_size=32", "data.batch_size=4", "trainer.max_steps=30",
        "trainer.val_every=5", "trainer.val_batches=1", "trainer.log_every=5",
        "trainer.progress=false", "tracking.routing_stats_every=5"]


def _start(path: str, home, *extra: str) -> subprocess.Popen:
    """The sweep in its own session; its stderr in `proc.err` (a file beside the sweep file)
    for the assertion messages."""
    # faulthandler: `_wait` asks a sweep that does not stop for every thread's stack (SIGABRT)
    env = {**os.environ, "ABLATE_HOME": str(home), "PYTHONFAULTHANDLER": "1"}
    err = f"{path}.stderr"
    with open(err, "ab") as f:
        proc = subprocess.Popen([sys.executable, "-m", "ablate", "sweep", path, *LONG, *extra],
                                env=env, stdout=subprocess.DEVNULL, stderr=f,
                                start_new_session=True, preexec_fn=_sigint_default)
    proc.err = err
    return proc


def _sigint_default() -> None:
    """The sweep takes Ctrl-C as a terminal's foreground job does. A test run started in the
    background of a script (`cmd &`) inherits SIGINT ignored, and Python (so the sweep too)
    keeps an ignored SIGINT ignored: the Ctrl-C tests would then test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _err(proc, tail: int = 3000) -> str:
    with open(proc.err, errors="replace") as f:
        return f.read()[-tail:]


def _wait(proc, timeout: float) -> int:
    """proc's exit code; a sweep still running after `timeout` seconds fails the test with
    its stderr and every thread's stack (faulthandler dumps them on SIGABRT)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        raise AssertionError(f"the sweep did not exit within {timeout:.0f} s:\n"
                             f"{_err(proc, 12000)}") from None


def _wait_running(proc, home, name: str, n: int = 1, ckpt: bool = True, timeout: float = 240):
    """Until n trials are RUNNING with a run id (and, with ckpt, each has its own last.ckpt:
    a trial killed then has a checkpoint to resume from, not merely its peer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if not (home / "optuna" / f"{name}.journal").exists():
            continue
        try:
            trials = _study(name).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the journal is there, the study not yet in it
            continue
        running = [t for t in trials if "mlflow_run_id" in t.user_attrs]
        if ckpt:
            folder = home / "checkpoints" / name
            running = [t for t in running
                       if any(folder.glob(f"trial-{t.number:05d}/*/last.ckpt"))]
        if len(running) >= n:
            return running
    raise AssertionError(f"no trial got going (exit code {proc.poll()})")


def _reap(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _servers_of(home) -> list[str]:
    """Command lines of live `mlflow server` / uvicorn processes serving `home`'s store."""
    return [cmd for cmd in command_lines() if "mlflow" in cmd and str(home) in cmd]


@pytest.mark.slow
def test_sigkill_of_the_whole_sweep_then_doctor_fix_and_resume(ablate_home, tmp_path):
    """Power loss: every process of a 2-worker sweep (and its MLflow server) SIGKILLed at once."""
    path = _sweep_file(tmp_path, "boom", 3)
    proc = _start(path, ablate_home, "--workers", "2")
    try:
        running = _wait_running(proc, ablate_home, "boom")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _reap(proc)
    # the local MLflow server runs in its own session (Ctrl-C must not stop it before the
    # workers): it still goes down with its parent
    deadline = time.monotonic() + 30
    while _servers_of(ablate_home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _servers_of(ablate_home)
    before = _finished_snapshot("boom", ablate_home)
    report = diagnose("boom")
    kinds = {p.kind for p in report.problems}
    assert {DEAD_TRIAL, STALE_RUN, STALE_PARENT} <= kinds, kinds
    assert _doctor(["--study", "boom"]) == 1
    assert _doctor(["--study", "boom", "--fix"]) == 0
    assert _finished_snapshot("boom", ablate_home) == before
    trials = _study("boom").get_trials()
    for t in running:
        assert trials[t.number].state.name == "FAIL"
        assert [x for x in trials if x.user_attrs.get("retry_of") == t.number]

    assert main(["sweep", path, *LONG]) == 0  # resumes: the retries pick up their checkpoints
    _assert_consistent("boom", ablate_home, 3)
    resumed = [r for r in all_runs(ablate_home) if "ablate.resumed_from" in r.data.tags]
    assert resumed and all(r.info.status == "FINISHED" for r in resumed)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm-single", "sigterm-parent", "ctrl-c-group",
                                 "sigkill-one-worker", "sigterm-one-worker"])
def test_signals_then_doctor_and_rerun_complete_the_study(how, ablate_home, tmp_path, capsys):
    """SIGTERM to `ablate sweep` (what `kill` and schedulers send) with one process or two
    workers, Ctrl-C (SIGINT to the whole process group, what a terminal sends), SIGKILL or
    SIGTERM of one worker (its peer goes on and picks up its trial): afterwards doctor finds
    nothing to fix (nothing finished lost) and a re-run completes the study."""
    name = how.replace("-", "_")
    path = _sweep_file(tmp_path, name, 3)
    proc = _start(path, ablate_home, *([] if how == "sigterm-single" else ["--workers", "2"]))
    try:
        running = _wait_running(proc, ablate_home, name, ckpt=how.endswith("one-worker"))
        if how in ("sigterm-single", "sigterm-parent"):
            proc.send_signal(signal.SIGTERM)
        elif how == "ctrl-c-group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(running[0].user_attrs["pid"], getattr(signal, how.split("-")[0].upper()))
        rc = _wait(proc, 300)
    finally:
        _reap(proc)
    before = _finished_snapshot(name, ablate_home)
    found = sorted({p.kind for p in diagnose(name).problems})
    report = fix(name)
    with capsys.disabled():  # what the crash left, for the record
        print(f"\n{how}: exit {rc}; doctor found {found or 'nothing'}; --fix did "
              f"{report.actions or 'nothing'}")
    assert report.ok, [p.detail for p in report.problems]
    # a signal ends the trials cleanly (a second one, e.g. the parent's SIGTERM after the
    # terminal's SIGINT, must not interrupt that cleanup); a killed worker is reaped by its peer
    assert not found
    assert rc == (0 if how.endswith("one-worker") else 130)
    if how.endswith("one-worker"):  # the peer resumed the trial from its checkpoint
        resumed = [r for r in all_runs(ablate_home) if "ablate.resumed_from" in r.data.tags]
        assert resumed and all(r.info.status == "FINISHED" for r in resumed)
    assert _finished_snapshot(name, ablate_home) == before
    assert main(["sweep", path, *LONG]) == 0
    _assert_consistent(name, ablate_home, 3)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_during_training_ends_the_trial_fail_its_run_killed_exit_130(sig, ablate_home,
                                                                              tmp_path):
    """The signal lands inside trainer.fit (Lightning turns it into sys.exit(1) unless ablate
    keeps it an interrupt): trial FAIL, run and parent KILLED, exit code 130, nothing to fix;
    the re-run trains the point again (a copy of the trial), resumed from the checkpoint."""
    path = _sweep_file(tmp_path, "term", 2)
    proc = _start(path, ablate_home)
    try:
        (t,) = _wait_running(proc, ablate_home, "term")
        proc.send_signal(sig)
        rc = _wait(proc, 120)
    finally:
        _reap(proc)
    study = _study("term")
    trials = study.get_trials()
    runs = {r.info.run_id: r.info.status for r in all_runs(ablate_home)}
    assert (rc, trials[t.number].state.name, runs[t.user_attrs["mlflow_run_id"]],
            runs[study.user_attrs["mlflow_parent_run_id"]]) == (130, "FAIL", "KILLED", "KILLED"), \
        _err(proc)
    assert trials[t.number].user_attrs["fail_reason"].startswith("interrupted")
    assert diagnose("term").ok

    assert main(["sweep", path, *LONG]) == 0
    _assert_consistent("term", ablate_home, 2)
    (retry,) = [x for x in _study("term").get_trials() if x.user_attrs.get("retry_of") == t.number]
    assert retry.state.name == "COMPLETE" and retry.params == t.params  # the same point again
    resumed = [r for r in all_runs(ablate_home) if "ablate.resumed_from" in r.data.tags]
    assert len(resumed) == 1 and resumed[0].info.status == "FINISHED"
    assert f"trial-{t.number:05d}" in resumed[0].data.tags["ablate.resumed_from"]


def mount_tmpfs(folder, size: str) -> bool:
    """Mount a tmpfs of `size` (e.g. "32k") on `folder`: a real ENOSPC when it fills. False
    where it cannot be mounted (needs root and mount)."""
    folder.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and not subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True, check=False).returncode


@contextlib.contextmanager
def small_tmpfs(folder, size: str):
    """`folder` on a tmpfs of `size` while the block runs; skips the test where it cannot."""
    if not mount_tmpfs(folder, size):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


@pytest.mark.slow
def test_real_full_disk_for_checkpoints(ablate_home, tiny, tmp_path):
    """A real ENOSPC: the checkpoint folder is a 32 KiB tmpfs (needs root and mount)."""
    path = _sweep_file(tmp_path, "full", 2)
    with small_tmpfs(ablate_home / "checkpoints", "32k"):
        assert main(["sweep", path, *tiny]) == 1  # failed trials: the study is not complete
        trials = _study("full").get_trials()
        assert trials and all(t.state.name == "FAIL" for t in trials)
        assert all("No space left" in t.user_attrs["fail_reason"] for t in trials)
        assert fix("full").ok
    assert main(["sweep", path, *tiny]) == 0
    _assert_consistent("full", ablate_home, 2)


def test_doctor_reads_without_creating(ablate_home, tmp_path, capsys):
    assert _doctor(["--study", "nothing-here"]) == 2
    assert "--study" in capsys.readouterr().err
    assert not ablate_home.exists()


def test_dead_tracking_server_then_a_complete_trial_without_its_run(ablate_home, fast, tmp_path,
                                                                   capsys):
    path = _sweep_file(tmp_path, "lost", 1)
    assert main(["sweep", path, *fast]) == 0
    capsys.readouterr()
    t0 = time.monotonic()
    rc = _doctor(["--study", "lost", "--tracking-uri", "http://me:hunter2@127.0.0.1:9"])
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - t0 < 30  # no minutes of HTTP retries
    assert "hunter2" not in err and "--tracking-uri" in err and len(err.strip().splitlines()) == 1

    (run,) = [r for r in all_runs(ablate_home) if "ablate.trial" in r.data.tags]
    store(ablate_home).delete_run(run.info.run_id)  # e.g. deleted in the MLflow UI
    report = fix("lost")
    assert [p.kind for p in report.problems] == [MISSING_RUN] and report.exit_code == 1
    assert _study("lost").get_trials()[0].state.name == "COMPLETE"  # reported, never changed


# -- what a crash or a bad sweep leaves that looks like a result ------------------------------
def _child_run(client, study, parent: str, trial: int, params: dict, metrics: dict) -> str:
    """A FINISHED trial run the way the sweep logs one: tags, the flattened config, metrics."""
    from mlflow.entities import Metric, Param

    exp = client.get_run(parent).info.experiment_id
    tags = {"ablate.study": study, "ablate.trial": str(trial), "mlflow.parentRunId": parent,
            "ablate.state": "COMPLETE", "ablate.revision": "1"}
    rid = client.create_run(exp, run_name=f"t{trial:03d}", tags=tags).info.run_id
    client.log_batch(rid, metrics=[Metric(k, v, 0, 4) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(rid, "FINISHED")
    return rid


def test_doctor_finds_runs_that_pass_for_results(ablate_home, fast, tmp_path, capsys):
    """A run FINISHED whose trial FAILED (e.g. trained to the end, then its objective was not
    there), a COMPLETE trial whose run lacks the objective metric, and a (configuration, seed)
    trained twice: reported; --fix closes the first FAILED with the trial's reason and changes
    nothing else (the other two are reported only)."""
    path = _sweep_file(tmp_path, "looks", 2)
    assert main(["sweep", path, *fast]) == 0
    assert diagnose("looks").ok
    study, client = _study("looks"), store(ablate_home)
    parent = study.user_attrs["mlflow_parent_run_id"]
    first = study.get_trials()[0]
    params = client.get_run(first.user_attrs["mlflow_run_id"]).data.params
    lr = {"optim.lr": optuna.distributions.CategoricalDistribution(LR)}

    # trained to the end, then failed: its run says FINISHED
    failed = study.ask(lr)
    failed_run = _child_run(client, "looks", parent, failed.number,
                            {**params, "optim.lr": str(failed.params["optim.lr"]),
                             "trainer.seed": "7"},
                            {"train/loss": 5.0, "val/loss": 5.1})
    failed.set_user_attr("mlflow_run_ids", [failed_run])
    failed.set_user_attr("fail_reason", "RuntimeError: objective val/los is None: not logged")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    # COMPLETE in Optuna, but its run never logged the objective
    blind = study.ask(lr)
    blind_run = _child_run(client, "looks", parent, blind.number,
                           {**params, "optim.lr": str(blind.params["optim.lr"]),
                            "trainer.seed": "8"},
                           {"train/loss": 5.0})
    blind.set_user_attr("mlflow_run_ids", [blind_run])
    study.tell(blind, 5.2)
    # the first trial's point and seed trained again, as another trial
    twin = study.ask(lr)
    twin_run = _child_run(client, "looks", parent, twin.number, params, {"val/loss": 5.3})
    twin.set_user_attr("mlflow_run_ids", [twin_run])
    study.tell(twin, 5.3)
    before_trials = {t.number: (t.state, t.values, t.params) for t in _study("looks").get_trials()}
    before_run = client.get_run(failed_run)

    report = diagnose("looks")
    found = {p.kind: p for p in report.problems}
    assert sorted(found) == sorted([FINISHED_RUN_FAILED_TRIAL, MISSING_OBJECTIVE, DUPLICATE_RUN]), \
        [p.detail for p in report.problems]
    assert (found[FINISHED_RUN_FAILED_TRIAL].run_id == failed_run
            and found[FINISHED_RUN_FAILED_TRIAL].fix)
    assert (found[MISSING_OBJECTIVE].trial == blind.number
            and "val/loss" in found[MISSING_OBJECTIVE].detail)
    dup = found[DUPLICATE_RUN].detail
    assert first.user_attrs["mlflow_run_id"] in dup and twin_run in dup
    assert not found[MISSING_OBJECTIVE].fix and not found[DUPLICATE_RUN].fix  # reported only
    assert _doctor(["--study", "looks"]) == 1
    out = capsys.readouterr().out
    assert all(k in out for k in found)

    assert _doctor(["--study", "looks", "--fix"]) == 1  # the reported-only ones remain
    after = client.get_run(failed_run)
    assert after.info.status == "FAILED"
    assert (after.data.tags["ablate.fail_reason"]
            == "RuntimeError: objective val/los is None: not logged")
    assert after.data.tags["ablate.state"] == "FAILED"
    assert (after.info.end_time == before_run.info.end_time
            and after.data.metrics == before_run.data.metrics)
    assert ({t.number: (t.state, t.values, t.params) for t in _study("looks").get_trials()}
            == before_trials)
    assert (client.get_run(blind_run).info.status == client.get_run(twin_run).info.status
            == "FINISHED")
    assert (sorted(p.kind for p in diagnose("looks").problems)
            == sorted([MISSING_OBJECTIVE, DUPLICATE_RUN]))
