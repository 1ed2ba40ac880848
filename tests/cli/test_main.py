"""The CLI's signal handling: SIGTERM is a Ctrl-C, and no stop is ever lost."""

from __future__ import annotations

import gc
import signal
import time

import pytest

from ablate.cli.main import _GracefulSignals


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
        with _GracefulSignals():
            signal.raise_signal(signal.SIGTERM)
            _train_on(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_that_lands_inside_a_finalizer_is_delivered_again(capsys):
    """Python drops an exception raised in a finalizer ("Exception ignored in ..."): without
    the second delivery the process would train on."""
    import sys

    hook = sys.unraisablehook
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        with _GracefulSignals():
            _SignalledWhileFinalized()  # finalized at once (refcount 0)
            gc.collect()
            _train_on(5)
    assert time.monotonic() - t0 < 2
    assert sys.unraisablehook is hook
    assert "stopping" not in capsys.readouterr().err  # counted as one signal, not two


STOPPED_INSIDE_C = '''
import ctypes, signal, sys
from ablate.cli.main import _GracefulSignals

run = ctypes.pythonapi.PyRun_String  # C code running Python source, as some imports do
run.restype, run.argtypes = ctypes.py_object, [ctypes.c_char_p, ctypes.c_int,
                                               ctypes.py_object, ctypes.py_object]
with _GracefulSignals():
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
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "stopped_inside_c"], cwd=tmp_path, env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
