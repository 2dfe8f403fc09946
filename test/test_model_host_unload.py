"""ModelHost.unload (deactivate, cleanup, the process stopping) waits only for the running
request: a load in progress is abandoned, waiting requests are refused (ROS-free)."""
from __future__ import annotations

import threading
import time

import pytest

from unipixel_ros.results import QueryCancelled
from unipixel_ros.ros.model_host import ModelHost, ModelSettings, ModelUnavailableError

SETTINGS = ModelSettings("slow-model", "cpu", "auto", "torch")


class Logger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)

    warning = error = info


class SlowLoader:
    """Loads once ``finish`` is set; counts its calls and leaves a note in the log."""

    def __init__(self) -> None:
        self.finish = threading.Event()
        self.calls = 0
        self.done = threading.Event()

    def __call__(self, settings: ModelSettings, log) -> str:
        self.calls += 1
        self.finish.wait(10)
        log("slow loader's note")
        self.done.set()
        return "pipeline"


def loading_host() -> tuple[ModelHost, SlowLoader, Logger]:
    loader, logger = SlowLoader(), Logger()
    host = ModelHost(SETTINGS, "queue", 2, logger, loader)
    host.start_loading()
    return host, loader, logger


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_unload_abandons_a_load_in_progress() -> None:
    host, loader, logger = loading_host()
    host.unload()
    assert not loader.done.is_set()                       # returned without waiting for the load
    assert not host.wait_ready(0) and not host.stats().loaded
    with pytest.raises(ModelUnavailableError, match="no model is loaded"):
        with host.exclusive("query"):
            pass
    logged = list(logger.lines)
    loader.finish.set()
    assert loader.done.wait(5)
    wait_until(lambda: not any(t.name == "unipixel-model-load" for t in threading.enumerate()))
    assert not host.stats().loaded                        # what it loaded was dropped
    assert logger.lines == logged                         # and nothing was said after unload


def test_loading_again_takes_the_abandoned_load_back() -> None:
    host, loader, logger = loading_host()
    host.unload()
    host.start_loading()                                  # while the first load still runs
    assert host.stats().running == "model load"
    loader.finish.set()
    assert host.wait_ready(5)
    assert loader.calls == 1                              # one load, not two side by side
    assert "slow loader's note" in logger.lines
    assert any("ready after" in line for line in logger.lines)
    with host.exclusive("query") as pipeline:
        assert pipeline == "pipeline"


def unload_under_requests() -> tuple[list[str], dict[str, str]]:
    """One request running (it notices a cancel), two waiting, then unload: what ran, how each ended."""
    host = ModelHost(SETTINGS, "queue", 2, Logger(), lambda settings, log: "pipeline")
    host.start_loading()
    assert host.wait_ready(5)
    cancel, ran, outcomes = threading.Event(), [], {}

    def request(name: str, cancel: threading.Event | None = None) -> None:
        try:
            with host.exclusive(name, cancel):
                ran.append(name)
                if cancel is not None:        # a pipeline that notices the cancel at its next step
                    cancel.wait(10)
                    raise QueryCancelled("canceled")
            outcomes[name] = "ran"
        except (QueryCancelled, ModelUnavailableError) as exc:
            outcomes[name] = type(exc).__name__

    threads = [threading.Thread(target=request, args=("running", cancel))]
    threads[0].start()
    wait_until(lambda: ran == ["running"])
    threads += [threading.Thread(target=request, args=(name,)) for name in ("second", "third")]
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: host.stats().queued == 2)
    host.unload()
    for thread in threads:
        thread.join(5)
    return ran, outcomes


def test_unload_refuses_the_waiting_requests() -> None:
    for _ in range(20):        # which thread takes the lock first when the running one ends varies
        ran, outcomes = unload_under_requests()
        assert ran == ["running"]
        assert outcomes == {"running": "QueryCancelled", "second": "ModelUnavailableError",
                            "third": "ModelUnavailableError"}
