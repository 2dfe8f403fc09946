"""The node as a program: SIGINT and SIGTERM stop it at any moment, quietly, with status 0.

This module imports only the standard library, so that the entry point (:func:`main`,
``unipixel_node``) can take over both signals before importing the node: rclpy and the
model stack take seconds to import, and Python's default handler would end a Ctrl-C
there with a ``KeyboardInterrupt`` traceback and status -2.

Three phases:

* importing: :func:`exit_on_stop_signal` ends the process with status 0 wherever it is
  (nothing has been started yet);
* from ``rclpy.init`` on, :class:`StopRequest` only records the signal; the node's
  ``run`` finishes starting, then stops in order (see :func:`unipixel_ros.ros.node.run`);
* leaving: :func:`exit_process`.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_on_stop_signal() -> None:
    """Until the node runs: SIGINT / SIGTERM end the process with status 0 and no traceback."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_now)


class StopRequest:
    """Set by SIGINT / SIGTERM (or :meth:`set` from any thread), waited for by the main thread.

    A Python signal handler runs on the main thread between two bytecodes, possibly while
    that thread holds a lock (``threading.Event.set`` would then deadlock), so the handler
    only writes a byte to a pipe that :meth:`wait` reads. The kernel hands a signal to any
    thread that does not block it (a DDS or executor thread as often as the main one), and
    the main thread, blocked in :meth:`wait`'s read, would then run no handler at all:
    the pipe is also the signal wakeup fd, which the interpreter writes to from whichever
    thread took the signal.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self.requested = False

    def install(self) -> None:
        """Make SIGINT and SIGTERM set this request (main thread only)."""
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.set()

    def set(self) -> None:
        self.requested = True
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:          # the pipe is full of earlier requests: one is enough
            pass

    def wait(self) -> None:
        """Block until set (returns at once if it already was).

        The pipe holds ``0`` for :meth:`set` and the number of each signal taken (the
        wakeup fd writes one for every signal with a Python handler): others are skipped.
        """
        stops = {0, *(int(s) for s in STOP_SIGNALS)}
        while os.read(self._read, 1)[0] not in stops:
            pass
        self.requested = True

    def close(self) -> None:
        """Close the pipe, first handing the wakeup fd back if it is this pipe's (main thread)."""
        if threading.current_thread() is threading.main_thread():
            previous = signal.set_wakeup_fd(-1)
            if previous not in (-1, self._write):
                signal.set_wakeup_fd(previous, warn_on_full_buffer=False)
        os.close(self._read)
        os.close(self._write)


def exit_process(status: int) -> NoReturn:
    """Leave with ``status`` once the node has been released.

    If another Python thread still runs (an abandoned model load), interpreter shutdown
    would end it from inside the C++ call it is in (torch, DDS), which aborts the process
    ("terminate called without an active exception"); exit directly instead.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if not others:
        sys.exit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main() -> NoReturn:
    """The ``unipixel_node`` program."""
    exit_on_stop_signal()
    from unipixel_ros.ros.node import run  # noqa: PLC0415 - seconds to import; signals are handled first

    exit_process(run())
