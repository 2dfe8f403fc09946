"""Test-side ROS plumbing: start helper processes, and a client node that reads
``/diagnostics`` and drives lifecycle transitions like an operator would."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile

from unipixel_ros.ros.spinner import stop_spinning

HELPERS = Path(__file__).resolve().parent
ROOT = HELPERS.parents[1]


def ros_args(namespace: str, params: dict[str, Any]) -> list[str]:
    """``--ros-args`` for a namespace and parameters (lists as YAML flow sequences)."""
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in params.items():
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value)
        args += ["-p", f"{name}:={text}"]
    return args


def spawn(argv: list[str], extra_env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    """A child process with this test session's ROS environment (domain, loopback-only discovery),
    plus ``extra_env``."""
    return subprocess.Popen([sys.executable, *argv], env={**os.environ, **(extra_env or {})}, cwd=ROOT, text=True,
                            **kwargs)


def interrupt(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a node process as Ctrl-C does (so it shuts down cleanly), killing it if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class NodeHost:
    """The node in its own process (test/helpers/node_host.py); ``windows()`` reads its windows."""

    def __init__(self, namespace: str, params: dict[str, Any]) -> None:
        self._stderr = tempfile.TemporaryFile("w+")
        self.proc = spawn([str(HELPERS / "node_host.py"), *ros_args(namespace, params)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._tmp = tempfile.TemporaryDirectory()
        self._dumps = 0

    def wait_ready(self, timeout: float = 30) -> None:
        self._expect("ready", timeout)

    def _expect(self, word: str, timeout: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(timeout)
        if not result or not result[0].startswith(word):
            raise AssertionError(f"node host did not answer '{word}' (got {result}); log:\n{self.log()}")
        return result[0]

    def windows(self) -> dict[str, list[tuple[dict, np.ndarray]]]:
        """Camera name -> [(frame metadata, RGB image)], oldest first."""
        self._dumps += 1
        path = str(Path(self._tmp.name) / f"dump{self._dumps}.npz")
        self.proc.stdin.write(f"dump {path}\n")
        self.proc.stdin.flush()
        self._expect("dumped", 30)
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return {cam: [(m, data[f"{cam}/{i}"]) for i, m in enumerate(frames)]
                    for cam, frames in meta.items()}

    def log(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()


class RosClient:
    """A plain rclpy node in the test process, spinning in a background thread."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._statuses: dict[str, DiagnosticStatus] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                      QoSProfile(depth=50))
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for status in msg.status:
                self._statuses[status.name] = status

    def status(self, name: str) -> DiagnosticStatus | None:
        with self._lock:
            return self._statuses.get(name)

    def values(self, name: str) -> dict[str, str]:
        status = self.status(name)
        return {kv.key: kv.value for kv in status.values} if status else {}

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 20) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} did not appear")
            future = client.call_async(request)
            self.wait_for(future.done, timeout, f"reply from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def change_state(self, node_fqn: str, transition: str) -> bool:
        request = ChangeState.Request()
        request.transition.label = transition
        return self.call(ChangeState, f"{node_fqn}/change_state", request).success

    def lifecycle_state(self, node_fqn: str) -> str:
        return self.call(GetState, f"{node_fqn}/get_state", GetState.Request()).current_state.label

    def close(self) -> None:
        stop_spinning(self.executor, self._thread)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
