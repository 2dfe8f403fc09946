"""Test-side plumbing for the model-side ROS tests: the node (with the pipeline double) in
its own process, and a client node that streams frames, calls services and actions and
records topics, as a user's code would."""
from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from rclpy.action import ActionClient
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image

from helpers.ros_client import interrupt, spawn
from unipixel_ros.ros.spinner import stop_spinning

HELPERS = Path(__file__).resolve().parent
NODE_NAME = "unipixel"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return value


def publish_until(publish: Callable[[], Any], done: Callable[[], Any], timeout: float, what: str,
                  every: float = 0.5) -> Any:
    """Call ``publish()``, then wait for ``done()`` like :func:`wait_for`, calling ``publish()``
    again every ``every`` s while it is false; returns the value of ``done()``.

    For messages to the node's best-effort subscriptions (camera topics): a publisher sees
    the node's subscription before the node has matched the publisher, and what is sent in
    that gap is lost without a trace, so one publish after ``Client.publisher`` may never
    arrive. ``publish`` should be safe to repeat (e.g. the same stamps again: the node drops
    a stamp it already holds), or ``done`` should look for what the latest call sent.
    """
    deadline = time.monotonic() + timeout
    again = time.monotonic()
    while True:
        if time.monotonic() >= again:
            publish()
            again = time.monotonic() + every
        if value := done():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class NodeProcess:
    """``test/helpers/perception_node.py`` with ``params`` (written to a params file) on top
    of ``params_file`` when one is given."""

    def __init__(self, namespace: str, params: dict[str, Any], token_delay: float = 0.0,
                 params_file: Path | None = None, track_delay: float = 0.0, load_delay: float = 0.0,
                 switch_interval: float | None = None) -> None:
        self.namespace = namespace
        self._tmp = tempfile.TemporaryDirectory()
        tmp = Path(self._tmp.name)
        self.fake_log = tmp / "calls.jsonl"
        files = [params_file] if params_file else []
        if params:
            files.append(tmp / "params.yaml")
            files[-1].write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        self._stderr = (tmp / "stderr.txt").open("w+")
        self.proc = spawn(
            [str(HELPERS / "perception_node.py"), "--fake-log", str(self.fake_log),
             "--token-delay", str(token_delay), "--track-delay", str(track_delay),
             "--load-delay", str(load_delay),
             *(("--switch-interval", str(switch_interval)) if switch_interval is not None else ()),
             "--ros-args", "-r", f"__ns:={namespace}",
             *(arg for f in files for arg in ("--params-file", str(f)))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)

    @property
    def fqn(self) -> str:
        return f"{self.namespace}/{NODE_NAME}"

    def wait_ready(self, timeout: float = 60) -> None:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("ready"):
            raise AssertionError(f"node did not start (got {line}); log:\n{self.log()}")

    def log(self) -> str:
        self._stderr.flush()
        return Path(self._stderr.name).read_text()

    def calls(self, kind: str | None = None) -> list[dict]:
        """Pipeline calls so far (JSON lines written by the double)."""
        if not self.fake_log.exists():
            return []
        calls = [json.loads(line) for line in self.fake_log.read_text().splitlines() if line.strip()]
        return [c for c in calls if kind is None or c["call"] == kind]

    def stop(self) -> None:
        interrupt(self.proc)
        self._stderr.close()
        self._tmp.cleanup()


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(rgb).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def camera_info_msg(width: int, height: int, k: list[float], frame_id: str) -> CameraInfo:
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.k = [float(v) for v in k]
    msg.d = [0.0] * 5
    msg.header.frame_id = frame_id
    return msg


def stamp_of(msg_stamp: Any) -> int:
    return msg_stamp.sec * 1_000_000_000 + msg_stamp.nanosec


def mono_pixels(msg: Image) -> np.ndarray:
    """mono8 / mono16 Image -> H x W array."""
    dtype = {"mono8": np.uint8, "mono16": np.dtype("<u2")}[msg.encoding]
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    return rows.view(dtype)[:, : msg.width]


class Client:
    """An rclpy node in the test process, spinning in the background."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._action_nodes: list[Any] = []
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def action_clients(self, action_type: Any, name: str, count: int, **qos: Any) -> list[ActionClient]:
        """``count`` action clients for ``name``, made on a node of their own that the executor
        spins only once they are complete: rclpy's ActionClient registers with its node before
        it has its lock, and an executor already spinning that node can reach it in between
        (the spinning thread then dies with AttributeError '_lock')."""
        node = rclpy.create_node(f"{self.node.get_name()}_actions_{len(self._action_nodes)}", context=self.context)
        clients = [ActionClient(node, action_type, name, **qos) for _ in range(count)]
        self._action_nodes.append(node)
        self.executor.add_node(node)
        return clients

    def publisher(self, msg_type: Any, topic: str, wait_subscribers: bool = True, timeout: float = 20) -> Any:
        pub = self.node.create_publisher(msg_type, topic, QoSProfile(depth=50))
        if wait_subscribers:
            wait_for(lambda: pub.get_subscription_count() > 0, timeout, f"a subscriber on {topic}")
        return pub

    def subscribe(self, msg_type: Any, topic: str) -> list:
        """Every message received on ``topic`` from now on (appended by the spin thread)."""
        received: list = []

        def keep(msg: Any) -> None:
            with self._lock:
                received.append(msg)
        self.node.create_subscription(msg_type, topic, keep, QoSProfile(depth=100))
        return received

    def snapshot(self, received: list) -> list:
        with self._lock:
            return list(received)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30) -> Any:
        future = self.call_async(srv_type, name, request)
        wait_for(future.done, timeout, f"a reply from {name}")
        return future.result()

    def call_async(self, srv_type: Any, name: str, request: Any) -> Any:
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=20):
            raise AssertionError(f"service {name} did not appear")
        return client.call_async(request)

    def action_client(self, action_type: Any, name: str) -> ActionClient:
        client, = self.action_clients(action_type, name, 1)
        if not client.wait_for_server(timeout_sec=20):
            raise AssertionError(f"action {name} did not appear")
        return client

    def close(self) -> None:
        stop_spinning(self.executor, self._thread)
        for node in self._action_nodes:
            node.destroy_node()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
