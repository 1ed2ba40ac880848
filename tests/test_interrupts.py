"""Stops (Ctrl-C, SIGTERM): SIGTERM is a Ctrl-C, no stop is lost, none cuts a store call in half."""

from __future__ import annotations

import gc
import signal
import time

import pytest

from ablate.interrupts import GracefulSignals, shielded


class _SignalledWhileFinalized:
    """Garbage whose finalizer is running when the signal's handler runs."""

    def __del__(self):
        signal.raise_signal(signal.SIGTERM)  # the handler runs at the next bytecode: in here
        sum(range(10))


def _train_on(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.001)


def test_sigterm_is_a_keyboard_interrupt_and_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        with GracefulSignals():
            signal.raise_signal(signal.SIGTERM)
            _train_on(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_that_lands_inside_a_finalizer_is_delivered_again(capsys):
    """Python drops an exception raised in a finalizer ("Exception ignored in ..."): without
    the second delivery the process would train on."""
    import sys

    hook = sys.unraisablehook
    gc.collect()  # before the clock starts: a long test session's heap takes seconds
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        with GracefulSignals():
            _SignalledWhileFinalized()  # finalized at once (refcount 0)
            _train_on(5)
    assert time.monotonic() - t0 < 2
    assert sys.unraisablehook is hook
    assert "stopping" not in capsys.readouterr().err  # counted as one signal, not two


def test_a_stop_inside_a_shield_waits_for_its_end_and_a_third_one_forces():
    finished = False
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        with GracefulSignals():
            with shielded():
                signal.raise_signal(signal.SIGTERM)
                _train_on(0.05)  # the handler has run by now: the stop waits
                finished = True
    assert finished

    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        with GracefulSignals():
            with shielded():
                for _ in range(3):
                    signal.raise_signal(signal.SIGTERM)
                    _train_on(0.01)
                pytest.fail("the third signal did not cut in")


def _stopped_at_random(write, check, rounds: int = 100) -> None:
    """SIGTERM `rounds` times at a random moment of `write()` repeated; after each stop,
    `check()` (one more write) must go through at once."""
    import os
    import random
    import threading

    rng = random.Random(0)
    for _ in range(rounds):
        timer = threading.Timer(rng.uniform(0.0005, 0.02), os.kill, (os.getpid(), signal.SIGTERM))
        with pytest.raises(KeyboardInterrupt), GracefulSignals():
            timer.start()
            while True:
                write()
        timer.join()
        t0 = time.monotonic()
        check()
        assert time.monotonic() - t0 < 4


def test_no_stop_leaves_the_mlflow_sqlite_store_locked(tmp_path):
    """Unshielded, 1 stop in 15-85 left the connection pooled with its write lock held:
    every later write of the process waited 20 s, then failed (3 test runs in 3)."""
    import itertools

    from mlflow.entities import Metric

    from ablate.tracking.store import ShieldedClient, client

    c = client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert isinstance(c, ShieldedClient)
    run, step = c.create_run(c.create_experiment("stops")).info.run_id, itertools.count()
    _stopped_at_random(
        lambda: c.log_batch(run, [Metric(k, 1.0, 0, next(step)) for k in "abcdef"],
                            synchronous=True),
        lambda: c.log_batch(run, [Metric("after", 1.0, 0, next(step))], synchronous=True))


def test_no_stop_leaves_the_optuna_sqlite_storage_locked(tmp_path):
    """The same for a study on `sqlite:///` (unshielded: the FAIL of the stopped trial waited
    5 s and raised StorageInternalError after a few stops)."""
    import itertools

    import optuna

    from ablate.sweep.storages import make_storage

    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path / 's.db'}", "s"),
                                study_name="s")
    trial, k = study.ask(), itertools.count()

    def check():
        nonlocal trial
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        trial = study.ask()

    _stopped_at_random(lambda: trial.set_user_attr(f"k{next(k) % 5}", 1), check)


STOPPED_INSIDE_C = '''
import ctypes, signal, sys
from ablate.interrupts import GracefulSignals

run = ctypes.pythonapi.PyRun_String  # C code running Python source, as some imports do
run.restype, run.argtypes = ctypes.py_object, [ctypes.c_char_p, ctypes.c_int,
                                               ctypes.py_object, ctypes.py_object]
with GracefulSignals():
    try:
        run(b"import signal; signal.raise_signal(signal.SIGTERM); sum(range(10))", 257, {}, {})
    except KeyboardInterrupt:
        pass  # handled: the command returns its own exit code
sys.exit(0)
'''


def test_a_handled_stop_that_passed_through_c_code_keeps_the_exit_code(tmp_path):
    """CPython marks such an interrupt unhandled and would end the process by SIGINT (-2)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "stopped_inside_c.py").write_text(STOPPED_INSIDE_C)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "stopped_inside_c"], cwd=tmp_path, env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
