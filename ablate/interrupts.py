"""Where a stop (Ctrl-C, SIGTERM) may land, and that none is lost.

`GracefulSignals` turns SIGTERM into the KeyboardInterrupt of a Ctrl-C for the length of a
command, so a stopped trial is closed (FAIL in Optuna, KILLED in MLflow) instead of left
RUNNING. `shielded()` marks code a stop must not cut in half: a store call on a database
connection this process holds. A KeyboardInterrupt raised between a SQLite statement and
the driver's bookkeeping leaves that connection in the pool with its transaction (and the
database's write lock) open; every later write of the process, the trial's own closing
included, then waits out the busy timeout, again and again (measured: a sweep that did
not exit in minutes after one SIGTERM). Inside a shield the first stop waits until the
store call has returned, and is raised there.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading

_depth = 0  # shields open in the main thread (signal handlers only run there)
_pending: int | None = None  # a stop received inside them, raised when the last one closes


@contextlib.contextmanager
def shielded():
    """Run the block whole: a stop received meanwhile (from `GracefulSignals`) is raised as
    its KeyboardInterrupt when the block ends. A third signal (force) still cuts in."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            signum, _pending = _pending, None
            raise KeyboardInterrupt(f"signal {signum}")


def shield(fn):
    """`fn` with each call `shielded`."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with shielded():
            return fn(*args, **kwargs)

    return call


def shield_public(name: str, attr):
    """`attr` (the attribute `name` of a store object), `shield`ed when it is a public method:
    how a store client or storage is made to run its calls whole."""
    return attr if name.startswith("_") or not callable(attr) else shield(attr)


class GracefulSignals:
    """SIGTERM behaves like Ctrl-C: the running trial ends FAIL in Optuna and KILLED in MLflow
    (instead of RUNNING forever), finished trials are untouched. The second signal is
    ignored: a terminal's Ctrl-C reaches the workers and their parent, which then also sends
    SIGTERM, and that would interrupt the cleanup halfway (e.g. with the study's journal lock
    held) and leave the trial RUNNING. A third one interrupts again (force).

    A stop that lands while a finalizer or a weakref callback runs (garbage collection can
    run one anywhere) is printed and dropped by Python ("Exception ignored in ..."): the
    process would train on as if never signalled. Such a KeyboardInterrupt is delivered
    again through the same handler a moment later, once the finalizer has returned.
    Previous handlers and hooks are restored on exit."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __enter__(self):
        import signal

        self.received, self.saved, self.again, self.hook = 0, {}, None, None
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers
        for name in self.SIGNALS:
            sig = getattr(signal, name)
            current = signal.getsignal(sig)
            if current in (signal.SIG_DFL, signal.default_int_handler):  # not if ignored or taken
                self.saved[sig] = current
                signal.signal(sig, self._handle)
        self.hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def _handle(self, signum, frame) -> None:
        global _pending
        if self.again == signum:  # a stop a finalizer dropped, delivered again: not a new one
            self.again = None
        else:
            self.received += 1
            self.signum = signum
            if self.received == 2:  # already stopping: let the cleanup finish
                print("ablate: stopping (closing the runs); signal again to force",
                      file=sys.stderr)
                return
        if _depth and self.received < 3:  # inside a store call: raised when it returns
            _pending = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def _unraisable(self, unraisable) -> None:
        import _thread

        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.received:
            self.again = self.signum
            # from another thread, a moment later: a handler run from here (still inside
            # the finalizer) would be dropped again
            threading.Timer(0.02, _thread.interrupt_main, (self.signum,)).start()
            return
        self.hook(unraisable)

    def __exit__(self, *exc) -> None:
        import signal

        global _pending
        _pending = None  # a stop for this command only
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.hook is not None:
            sys.unraisablehook = self.hook
        if self.received:  # the stop was handled: the exit code is ours
            _forget_unhandled_interrupt()


def _forget_unhandled_interrupt() -> None:
    """CPython marks a KeyboardInterrupt that left Python source run from C (the PyRun_*
    API) as unhandled, even when Python code caught it later, and ends a `python -m`
    process by SIGINT at exit (status -2 instead of the command's own code). Running any
    source through the same C path clears the mark."""
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"")
    except (ImportError, AttributeError):  # not CPython: no such mark
        pass
