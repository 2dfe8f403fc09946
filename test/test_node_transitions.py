"""Lifecycle transitions and stopping under load, on a real node process (pipeline doubled).

Several cameras stream best-effort video (small frames at a high rate from the camera
publisher, large ones from this process, which the transport partly loses: message-lost
events) while queries are in flight, and the node is deactivated and activated many
times over its ``change_state`` service, then cleaned up and configured again: the
process must survive every transition, keep its thread count, and finally stop on
SIGINT with status 0 and a clean stderr. The node switches threads every 10 us instead
of 5 ms, so that races between its threads show within a few transitions.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from helpers.perception_client import Client, NodeProcess, image_msg, wait_for  # noqa: E402
from helpers.ros_client import HELPERS, spawn  # noqa: E402
from unipixel_ros.ros.node import EXECUTOR_THREADS  # noqa: E402
from unipixel_ros.srv import Query  # noqa: E402

pytestmark = pytest.mark.ros

NS = "/transitions"
SMALL = ["a", "b"]          # from the camera publisher
LARGE = "large"             # from this process
CAMERAS = [*SMALL, LARGE]
CYCLES = 60
CLEANUP_EVERY = 10          # every 10th cycle goes through cleanup and configure
STREAM_S = 60.0             # longer than the test; the publisher is stopped at the end
RATE_HZ = 150
LARGE_RATE_HZ, LARGE_SHAPE, LARGE_BURST = 100, (240, 320, 3), 4
SWITCH_INTERVAL_S = 1e-5
PARAMS = {
    "cameras": CAMERAS,
    "qos.input": "best_effort",
    "qos.input_depth": 1,
    "window.max_frames": 8,
    "query.busy_policy": "queue",
    "query.max_queued": 2,
    "query.max_frame_age_s": 1000.0,
    "tracking.rate_hz": 30.0,
    "diagnostics.period_s": 0.2,
    "model.id": "stress-model",
}
# Text and traces that must never reach stderr.
BAD_OUTPUT = ("Traceback", "never retrieved", "Failed to publish log message", "InvalidHandle",
              "terminate called")


def stream_plan(path: Path) -> None:
    """Camera publisher plan: the small cameras at RATE_HZ, best effort, history 1."""
    base = time.time_ns()
    frames = int(STREAM_S * RATE_HZ)
    period = 10**9 // RATE_HZ
    streams = [{"topic": f"{NS}/{cam}/image_raw", "kind": "raw", "rate_hz": RATE_HZ,
                "frames": [{"stamp_ns": base + i * period, "frame_id": cam, "seed": i % 7,
                            "height": 48, "width": 64, "encoding": "rgb8"} for i in range(frames)]}
               for cam in SMALL]
    path.write_text(json.dumps({"qos": "best_effort", "depth": 1, "streams": streams}))


def threads(pid: int) -> tuple[int, int]:
    """(unnamed threads: Python's and the like, named native ones: DDS) of process ``pid``."""
    own = Path(f"/proc/{pid}/comm").read_text()
    names = [Path(f"/proc/{pid}/task/{t}/comm").read_text() for t in os.listdir(f"/proc/{pid}/task")]
    unnamed = sum(name == own for name in names)
    return unnamed, len(names) - unnamed


def wait_alive(node: NodeProcess, predicate, timeout: float, what: str) -> None:
    """wait_for, failing at once with the node's log if the node process ends meanwhile."""
    def check() -> bool:
        if node.proc.poll() is not None:
            raise AssertionError(f"the node ended (status {node.proc.poll()}) while waiting for {what}; "
                                 f"log:\n{node.log()}")
        return predicate()
    wait_for(check, timeout, what)


class Lifecycle:
    """The node's lifecycle services, through one client each (as a lifecycle manager holds them)."""

    def __init__(self, client: Client, node: NodeProcess) -> None:
        self._node = node
        self._change = client.node.create_client(ChangeState, f"{node.fqn}/change_state")
        self._get = client.node.create_client(GetState, f"{node.fqn}/get_state")
        assert self._change.wait_for_service(timeout_sec=30) and self._get.wait_for_service(timeout_sec=30)

    def state(self) -> str:
        future = self._get.call_async(GetState.Request())
        wait_for(future.done, 30, "get_state")
        return future.result().current_state.label

    def change(self, transition: str) -> None:
        """Run one transition; fail with the node's log if it is refused or the node died."""
        request = ChangeState.Request()
        request.transition.label = transition
        future = self._change.call_async(request)
        deadline = time.monotonic() + 30
        while not future.done() and self._node.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if not (future.done() and future.result().success) or self._node.proc.poll() is not None:
            why = "refused" if future.done() else "no answer"
            raise AssertionError(f"{transition}: {why}; node exit status {self._node.proc.poll()}; "
                                 f"log:\n{self._node.log()}")


class LargeCamera:
    """Publishes large frames best effort at LARGE_RATE_HZ until stopped."""

    def __init__(self, client: Client, topic: str) -> None:
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._pub = client.node.create_publisher(Image, topic, qos)
        self._msg = image_msg(np.full(LARGE_SHAPE, 90, np.uint8), 0, LARGE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(LARGE_BURST / LARGE_RATE_HZ):
            for _ in range(LARGE_BURST):
                self._msg.header.stamp.sec, self._msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
                self._pub.publish(self._msg)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class QueryLoad:
    """Keeps up to ``in_flight`` queries outstanding against the node until stopped.

    A request still unanswered after ``give_up_s`` is dropped: one sent just before a
    cleanup reached a service that is gone (DDS does not tell the client).
    """

    def __init__(self, client: Client, node: str, in_flight: int = 3, give_up_s: float = 3.0) -> None:
        self._service = client.node.create_client(Query, f"{node}/query")
        assert self._service.wait_for_service(timeout_sec=30)
        self._in_flight, self._give_up_s = in_flight, give_up_s
        self._stop = threading.Event()
        self.answers: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending: list = []                     # (future, sent at)
        i = 0
        while not self._stop.is_set():
            self.answers += [f.result().message for f, _ in pending if f.done()]
            now = time.monotonic()
            pending = [(f, t) for f, t in pending if not f.done() and now - t < self._give_up_s]
            while len(pending) < self._in_flight:
                cam = CAMERAS[i % len(CAMERAS)]
                i += 1
                pending.append((self._service.call_async(Query.Request(camera=cam, text="red")), now))
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_deactivate_activate_under_streams_and_queries() -> None:
    """Many deactivate / activate cycles, every tenth through cleanup and configure, with
    cameras and queries busy throughout: the node survives, leaks no threads, still
    answers, and stops cleanly."""
    node = NodeProcess(NS, PARAMS, token_delay=0.02, switch_interval=SWITCH_INTERVAL_S)
    client = Client("transitions_test_client")
    tmp = tempfile.TemporaryDirectory()
    plan = Path(tmp.name) / "plan.json"
    stream_plan(plan)
    publisher = spawn([str(HELPERS / "camera_publisher.py"), str(plan)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = None
    large = LargeCamera(client, f"{NS}/{LARGE}/image_raw")
    try:
        node.wait_ready()
        lifecycle = Lifecycle(client, node)
        assert lifecycle.state() == "active"
        load = QueryLoad(client, node.fqn)
        wait_alive(node, lambda: any(a == "" for a in load.answers), 60, "a first answered query")
        unnamed, native = threads(node.proc.pid)
        for i in range(1, CYCLES + 1):
            lifecycle.change("deactivate")
            if i % CLEANUP_EVERY == 0:
                lifecycle.change("cleanup")
                lifecycle.change("configure")
            lifecycle.change("activate")
        answered = len(load.answers)
        wait_alive(node, lambda: any(a == "" for a in load.answers[answered:]), 60, "a query answered afterwards")
        # Model loads (a thread each) leave none behind: more threads than before only as
        # the executor's pool grows to its size; DDS threads as many as before.
        limit = (unnamed + EXECUTOR_THREADS, native)
        wait_alive(node, lambda: all(n <= m for n, m in zip(threads(node.proc.pid), limit)), 20,
                   f"at most {limit} (unnamed, DDS) threads, now {threads(node.proc.pid)}")
        load.stop()
        node.proc.send_signal(signal.SIGINT)
        assert node.proc.wait(15) == 0, node.log()
        log = node.log()
        for bad in BAD_OUTPUT:
            assert bad not in log, log
    finally:
        if load is not None:
            load.stop()
        large.stop()
        publisher.kill()
        publisher.wait()
        node.stop()
        client.close()
        tmp.cleanup()
