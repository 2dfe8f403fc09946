"""ModelHost: background loading, FIFO queue, busy policies, cancel while waiting, tracking yields (ROS-free)."""
from __future__ import annotations

import threading
import time

import pytest

from unipixel_ros.results import QueryCancelled
from unipixel_ros.ros.model_host import BusyError, ModelHost, ModelSettings, ModelUnavailableError

SETTINGS = ModelSettings("test-model", "cpu", "auto", "torch")


class Logger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))

    def error(self, msg: str) -> None:
        self.lines.append(("error", msg))


def host(policy: str = "queue", max_queued: int = 2, loader=None) -> ModelHost:
    h = ModelHost(SETTINGS, policy, max_queued, Logger(), loader or (lambda settings, log: "pipeline"))
    h.start_loading()
    assert h.wait_ready(5)
    return h


def hold(h: ModelHost, what: str, release: threading.Event, order: list[str]) -> threading.Thread:
    """A thread that takes the model as ``what`` and keeps it until ``release`` is set."""
    def run() -> None:
        try:
            with h.exclusive(what):
                order.append(what)
                release.wait(5)
        except (BusyError, QueryCancelled) as exc:
            order.append(f"{what}: {type(exc).__name__}")
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_requests_run_one_at_a_time_in_arrival_order() -> None:
    h, release, order = host(), threading.Event(), []
    threads = [hold(h, "a", release, order)]
    wait_until(lambda: order == ["a"])
    for name in ("b", "c"):
        threads.append(hold(h, name, release, order))
        wait_until(lambda n=len(threads) - 1: h.stats().queued == n)
    with pytest.raises(BusyError, match=r"2 requests are already waiting \(query.max_queued = 2\)"):
        with h.exclusive("d"):
            pass
    release.set()
    for t in threads:
        t.join()
    assert order == ["a", "b", "c"]
    assert (h.stats().served, h.stats().refused) == (3, 1)


def test_reject_policy_refuses_while_a_request_runs_but_not_while_tracking() -> None:
    h, release, order = host("reject"), threading.Event(), []
    with h.if_idle() as pipeline:
        assert pipeline == "pipeline"
        waiter = hold(h, "query", release, order)          # waits for the tracking step, not refused
        wait_until(lambda: h.stats().queued == 1)
    wait_until(lambda: order == ["query"])
    with pytest.raises(BusyError, match="a query is running and query.busy_policy is 'reject'"):
        with h.exclusive("click"):
            pass
    release.set()
    waiter.join()


def test_tracking_yields_to_running_and_waiting_requests() -> None:
    h, release, order = host(), threading.Event(), []
    runner = hold(h, "query", release, order)
    wait_until(lambda: order == ["query"])
    with h.if_idle() as pipeline:
        assert pipeline is None
    release.set()
    runner.join()
    with h.if_idle() as pipeline:
        assert pipeline == "pipeline"
    assert h.stats().tracking_skipped == 1


def test_a_waiting_request_can_be_canceled() -> None:
    h, release, order = host(), threading.Event(), []
    runner = hold(h, "query", release, order)
    wait_until(lambda: order == ["query"])
    cancel = threading.Event()
    errors: list[Exception] = []

    def wait_then_cancel() -> None:
        try:
            with h.exclusive("second", cancel):
                pass
        except QueryCancelled as exc:
            errors.append(exc)
    waiter = threading.Thread(target=wait_then_cancel)
    waiter.start()
    wait_until(lambda: h.stats().queued == 1)
    cancel.set()
    waiter.join(5)
    assert [str(e) for e in errors] == ["second canceled while waiting for the model"]
    assert h.stats().queued == 0
    release.set()
    runner.join()


def test_requests_wait_for_a_slow_load_and_a_failed_load_is_reported() -> None:
    gate = threading.Event()

    def slow(settings, log):
        gate.wait(5)
        return "pipeline"
    h = ModelHost(SETTINGS, "queue", 2, Logger(), slow)
    h.start_loading()
    assert h.stats().running == "model load"
    got: list[object] = []

    def use() -> None:
        with h.exclusive("query") as pipeline:
            got.append(pipeline)
    waiter = threading.Thread(target=use)
    waiter.start()
    wait_until(lambda: h.stats().queued == 1)
    gate.set()
    waiter.join(5)
    assert got == ["pipeline"]

    def broken(settings, log):
        raise OSError("no such checkpoint: test-model")
    logger = Logger()
    failed = ModelHost(SETTINGS, "queue", 2, logger, broken)
    failed.start_loading()
    assert not failed.wait_ready(5)
    with pytest.raises(ModelUnavailableError,
                       match="model 'test-model' failed to load: OSError: no such checkpoint: test-model"):
        with failed.exclusive("query"):
            pass
    assert ("error", "could not load model 'test-model': OSError: no such checkpoint: test-model") in logger.lines


def test_unload_cancels_the_running_request_and_frees_the_model() -> None:
    h = host()
    cancel, entered = threading.Event(), threading.Event()

    def run() -> None:
        with h.exclusive("query", cancel):
            entered.set()
            cancel.wait(5)                       # a pipeline checking its cancel event
    runner = threading.Thread(target=run)
    runner.start()
    entered.wait(5)
    h.unload()
    runner.join(5)
    assert cancel.is_set() and not h.stats().loaded
    with pytest.raises(ModelUnavailableError, match="no model is loaded"):
        with h.exclusive("query"):
            pass
