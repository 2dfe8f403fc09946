"""Stopping the node with SIGINT at any moment: promptly, quietly, with status 0.

The program itself (``scripts/unipixel_node`` and ``python -m unipixel_ros.ros.node``)
is interrupted while it imports, while it configures and while its model loads; the
node with the pipeline double is interrupted during a slow model load and during
queries. stderr may hold the node's log lines but no traceback, no unretrieved
exception and no log line that ROS could not publish any more.
"""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from helpers.perception_client import Client, NodeProcess, image_msg, wait_for  # noqa: E402
from helpers.ros_client import ROOT, ros_args, spawn  # noqa: E402
from unipixel_ros.srv import Query  # noqa: E402

pytestmark = pytest.mark.ros

BAD_OUTPUT = ("Traceback", "never retrieved", "Failed to publish log message", "KeyboardInterrupt",
              "terminate called")
STOP_WITHIN_S = 5.0         # from SIGINT to exit, on a loaded machine
ASK_AGAIN_S = 3.0           # a refusal comes back within milliseconds; silence this long is a lost reply


class Program:
    """The node program in a process of its own, its stderr read line by line as it comes."""

    def __init__(self, argv: list[str], namespace: str) -> None:
        params = {"cameras": ["front"], "model.id": "tiny", "model.device": "cpu"}
        self.proc = spawn([*argv, *ros_args(namespace, params)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def rclpy_loaded(self) -> bool:
        """rclpy's extension is mapped: the program is past its first lines, importing."""
        try:
            return "_rclpy_pybind11" in Path(f"/proc/{self.proc.pid}/maps").read_text()
        except OSError:
            return False

    def interrupt(self) -> float:
        """SIGINT; seconds until the process ended."""
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        return time.monotonic() - sent

    def stderr(self) -> str:
        return "".join(self.lines)


def stop_problems(status: int | None, seconds: float, stderr: str) -> list[str]:
    """What was wrong with a stop (empty: status 0, in time, a clean stderr)."""
    problems = [f"status {status}"] if status != 0 else []
    if seconds >= STOP_WITHIN_S:
        problems.append(f"took {seconds:.1f} s")
    return problems + [f"{bad!r} in stderr" for bad in BAD_OUTPUT if bad in stderr]


def assert_quiet_stop(status: int | None, seconds: float, stderr: str, when: str) -> None:
    problems = stop_problems(status, seconds, stderr)
    assert not problems, f"{when}: {'; '.join(problems)}\n{stderr}"


PHASES = {"importing": Program.rclpy_loaded,                    # rclpy loaded, the model side not yet
          "configuring": lambda p: p.logged("loading model"),      # the model load being started
          "loading": lambda p: p.logged("]: active")}              # the model loading in the background


@pytest.mark.parametrize("argv, phases", [
    ([str(ROOT / "scripts" / "unipixel_node")], ["importing"]),   # its own first lines; then as below
    (["-m", "unipixel_ros.ros.node"], list(PHASES)),
], ids=["script", "module"])
def test_interrupt_while_starting(argv: list[str], phases: list[str]) -> None:
    """One process per phase, side by side, each interrupted once it is in its phase."""
    programs = {phase: Program(argv, f"/stop_{phase}") for phase in phases}
    try:
        failures = []
        for phase in phases:
            program, reached = programs[phase], PHASES[phase]
            wait_for(lambda: reached(program) or program.proc.poll() is not None, 120, f"phase {phase}")
            assert program.proc.poll() is None, program.stderr()
            seconds = program.interrupt()
            if problems := stop_problems(program.proc.returncode, seconds, program.stderr()):
                failures.append(f"{phase}: {'; '.join(problems)}\n{program.stderr()}")
        assert not failures, "\n".join(failures)
        if "loading" in programs:
            assert not programs["loading"].logged("ready after"), "the model loaded before the signal"
    finally:
        for program in programs.values():
            if program.proc.poll() is None:
                program.proc.kill()
                program.proc.wait()


def test_interrupt_while_the_model_loads() -> None:
    """A model that takes a minute to load: the node stops without waiting for it."""
    node = NodeProcess("/stop_load", {"cameras": ["front"], "model.id": "slow-model"}, load_delay=60.0)
    try:
        node.wait_ready()
        sent = time.monotonic()
        node.proc.send_signal(signal.SIGINT)
        status = node.proc.wait(30)
        seconds = time.monotonic() - sent
        assert_quiet_stop(status, seconds, node.log(), "loading")
        assert "loading model 'slow-model'" in node.log()
        assert node.calls("load") == []                       # abandoned, not finished
    finally:
        node.stop()


def test_interrupt_during_queries() -> None:
    """Queries running and queued (each takes seconds): the node cancels them and stops."""
    params = {"cameras": ["cam"], "query.busy_policy": "queue", "query.max_queued": 2,
              "query.max_frame_age_s": 1000.0, "model.id": "test-model"}
    node = NodeProcess("/stop_query", params, token_delay=1.0)
    client = Client("stop_query_client")
    try:
        node.wait_ready()
        pub = client.node.create_publisher(Image, "/stop_query/cam/image_raw", QoSProfile(depth=10))
        wait_for(lambda: pub.get_subscription_count() > 0, 20, "the node's camera subscription")
        frame = np.full((24, 32, 3), 100, np.uint8)
        query = client.node.create_client(Query, "/stop_query/unipixel/query")
        assert query.wait_for_service(timeout_sec=20)
        futures: list = []
        asked = [0.0]

        def a_query_runs() -> bool:
            # The publisher can see the node's subscription before the node has matched the
            # publisher, and frames sent in that gap are lost: while a query comes back refused
            # (no frame held yet), send another frame and ask again. A first request can also go
            # unanswered for good (the node's reply writer had not yet matched this client's
            # reader when it replied): no reply within ASK_AGAIN_S counts as refused too.
            if not futures or futures[-1].done() or time.monotonic() - asked[0] > ASK_AGAIN_S:
                pub.publish(image_msg(frame, time.time_ns(), "cam"))
                time.sleep(0.05)
                futures.append(query.call_async(Query.Request(camera="cam", text="red")))
                asked[0] = time.monotonic()
            return bool(node.calls("query"))
        wait_for(a_query_runs, 20, "a query running in the pipeline")
        futures += [query.call_async(Query.Request(camera="cam", text="red")) for _ in range(2)]  # queued
        sent = time.monotonic()
        node.proc.send_signal(signal.SIGINT)
        status = node.proc.wait(30)
        seconds = time.monotonic() - sent
        assert_quiet_stop(status, seconds, node.log(), "querying")
        assert not any(f.done() and f.result().success for f in futures)   # none ran to its end
    finally:
        node.stop()
        client.close()

