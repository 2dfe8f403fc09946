"""The executor spinning in a thread of its own, which also runs jobs handed to it.

rclpy 9.1's executor lists the nodes' entities and then marks each one in use for its
wait set, in the spinning thread, while callbacks run in its pool. An entity destroyed
from a callback in between (a lifecycle transition served by ``change_state``) is
still added to the wait set: a QoS event handler raises ``InvalidHandle`` there, an
action server ``RCLError``, and the executor, with the process, stops. In the spinning
thread itself, outside ``spin``, no listing is half done, so :meth:`Spinner.call` runs a
job there, between two waits; the node runs its transitions through it.

Jobs wait for the callback being handed out and then hold up the executor, so they
should be short (a transition) and must not wait for a callback that has yet to start.
"""
from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from rclpy.executors import Executor
from rclpy.task import Future

T = TypeVar("T")


class Spinner:
    """Spins ``executor`` in a thread until :meth:`stop` (or until ROS shuts down), then calls
    ``on_exit``; ``failed`` says that spinning ended with an exception (printed as usual)."""

    def __init__(self, executor: Executor, on_exit: Callable[[], None], name: str = "executor") -> None:
        self._executor = executor
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._jobs: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = []
        self._wakeup: Future[None] = Future()
        self._stopping = self._stopped = False
        self.failed = False
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.start()

    def call(self, job: Callable[[], T]) -> T:
        """``job()``, run on the spinning thread between two waits; run here once spinning ended."""
        if threading.current_thread() is self._thread:
            return job()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            stopped = self._stopped
            if not stopped:
                self._jobs.append((job, result))
                wakeup = self._wakeup
        if stopped:
            return job()
        wakeup.set_result(None)
        return result.result()

    def stop(self) -> None:
        """Return once the executor hands out no more callbacks (those running go on)."""
        with self._lock:
            self._stopping = True
            wakeup = self._wakeup
        wakeup.set_result(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._spin_once_more():
                pass
        except BaseException:
            self.failed = True
            raise
        finally:
            with self._lock:
                self._stopped = True
                jobs, self._jobs = self._jobs, []
            _run_jobs(jobs)           # posted before the end: nothing waits on entities any more
            self._on_exit()

    def _spin_once_more(self) -> bool:
        """Spin until woken, run the jobs handed in meanwhile; True when spinning is over."""
        with self._lock:
            wakeup = self._wakeup
        self._executor.spin_until_future_complete(wakeup)
        with self._lock:
            jobs, self._jobs = self._jobs, []
            over = self._stopping or not wakeup.done()      # not woken: ROS or the executor shut down
            self._stopped = over
            if wakeup.done():
                self._wakeup = Future()
        _run_jobs(jobs)
        return over


def _run_jobs(jobs: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]) -> None:
    for job, result in jobs:
        try:
            result.set_result(job())
        except BaseException as exc:      # handed to the caller, which raises it
            result.set_exception(exc)


def stop_spinning(executor: Executor, thread: threading.Thread, timeout_s: float = 10.0) -> bool:
    """Stop an executor spinning in ``thread`` and wait for the thread to leave ``spin``.

    Call it before destroying the executor's nodes: a node destroyed while the spinning
    thread is still inside a wait can leave that thread holding rclpy's handles (and the
    interpreter lock) forever, which hangs the whole process. Returns whether the thread
    ended within ``timeout_s``.
    """
    executor.shutdown(timeout_sec=timeout_s)
    thread.join(timeout_s)
    return not thread.is_alive()
