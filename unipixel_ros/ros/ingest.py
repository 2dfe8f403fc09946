"""Camera subscriptions feeding one :class:`FrameWindow` per camera.

:class:`CameraFeed` is one camera's path from message to window: stamp checks
first (duplicates and decimated frames are never decoded), then conversion,
then insertion. Every frame that is not stored is counted under a reason, and a
warning is logged at most once per reason every :data:`WARN_PERIOD_S`; nothing
a publisher sends can raise out of the callback.

:class:`CameraIngest` is the node component that owns the feeds: built at
configure, it subscribes on activate and unsubscribes on deactivate (windows
keep their frames while inactive, and are dropped at cleanup). Each camera has
its own mutually exclusive callback group, so one camera's frames are handled
in order while cameras run in parallel under a multi-threaded executor.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.node import Node
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from unipixel_ros.frames import NS_PER_S, Admission, CameraIntrinsics, Frame, FrameWindow, WindowLimits
from unipixel_ros.ros.conversions import (
    ConverterUnavailable,
    ImageConverter,
    ImageDecodeError,
    camera_intrinsics,
    make_converter,
)
from unipixel_ros.ros.diagnostics import CameraDiagnostics
from unipixel_ros.ros.params import CameraConfig, NodeConfig, ParameterError
from unipixel_ros.ros.qos import qos_profile

WARN_PERIOD_S = 5.0
CONVERSION_FAILURE = "conversion_failure"   # an exception the converter did not classify


def stamp_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return stamp.sec * NS_PER_S + stamp.nanosec


@dataclass(frozen=True)
class FeedCounters:
    """Cumulative counts of one camera since configure."""

    received: int = 0
    stored: int = 0
    decimated: int = 0
    held_stamp_jump: int = 0                                   # held aside: stamped far ahead (FrameWindow)
    dropped: Mapping[str, int] = field(default_factory=dict)   # reason -> frames
    lost_in_transport: int = 0                                 # reported by the middleware
    camera_infos: int = 0
    last_drop: str = ""                                        # "<reason>: <detail>"

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class _WarnThrottle:
    """At most one log line per key per period, telling how many were held back."""

    def __init__(self, period_s: float, clock: Callable[[], float]) -> None:
        self._period_s = period_s
        self._clock = clock
        self._next: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def __call__(self, key: str) -> int | None:
        """None when this occurrence is held back, else how many were held back before it."""
        now = self._clock()
        if now < self._next.get(key, float("-inf")):
            self._held[key] += 1
            return None
        self._next[key] = now + self._period_s
        return self._held.pop(key, 0)


class CameraFeed:
    """One camera: message checks, conversion, its window and its counters."""

    def __init__(self, config: CameraConfig, limits: WindowLimits, converter: ImageConverter,
                 logger: RcutilsLogger, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.window = FrameWindow(limits)
        self._decode = converter.compressed if config.transport == "compressed" else converter.raw
        self._logger = logger
        self._throttle = _WarnThrottle(WARN_PERIOD_S, clock)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._last_drop = ""
        self._camera_info: CameraIntrinsics | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def camera_info(self) -> CameraIntrinsics | None:
        """The latest calibration received, or None."""
        return self._camera_info

    def on_image(self, msg: Image | CompressedImage) -> str:
        """Subscription callback; returns what happened (an :class:`Admission` value or a drop reason)."""
        stamp = stamp_ns(msg.header.stamp)
        self._bump("received")
        verdict = self.window.admit(stamp)
        if verdict is Admission.STORED:
            try:
                image = self._decode(msg)
            except ImageDecodeError as exc:
                return self._drop(exc.reason, str(exc))
            except Exception as exc:  # a converter fault must not take the node down
                return self._drop(CONVERSION_FAILURE, f"{type(exc).__name__}: {exc}")
            verdict = self.window.insert(Frame(image, stamp, msg.header.frame_id, self._camera_info))
        if verdict.is_drop:
            return self._drop(verdict.value, f"stamp {stamp} ns")
        self._bump(verdict.value)
        return verdict.value

    def on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = camera_intrinsics(msg)
        self._bump("camera_infos")

    def on_message_lost(self, info: QoSMessageLostInfo) -> None:
        with self._lock:
            self._counts["lost_in_transport"] += info.total_count_change

    def counters(self) -> FeedCounters:
        with self._lock:
            return FeedCounters(dropped=dict(self._dropped), last_drop=self._last_drop,
                                **{k: self._counts[k] for k in
                                   ("received", "stored", "decimated", "held_stamp_jump", "lost_in_transport",
                                    "camera_infos")})

    def _bump(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _drop(self, reason: str, detail: str) -> str:
        with self._lock:
            self._dropped[reason] += 1
            self._last_drop = f"{reason}: {detail}"
        held = self._throttle(reason)
        if held is not None:
            more = f" ({held} more since the last report)" if held else ""
            self._logger.warning(f"camera '{self.name}': dropped a frame, {reason}: {detail}{more}")
        return reason


class CameraIngest:
    """Node component owning every camera feed and its subscriptions."""

    def __init__(self, node: Node, config: NodeConfig) -> None:
        try:
            converter, self.converter_note = make_converter(config.converter_backend)
        except ConverterUnavailable as exc:
            raise ParameterError([("conversion.backend", str(exc))]) from exc
        self.converter_name = converter.name
        self._node = node
        self._qos = qos_profile(config.qos.input, config.qos.input_depth)
        self.feeds: dict[str, CameraFeed] = {
            cam.name: CameraFeed(cam, config.window, converter, node.get_logger())
            for cam in config.cameras}
        self._diagnostics = [
            CameraDiagnostics(node.get_fully_qualified_name(), feed,
                              node.resolve_topic_name(feed.config.subscribed_topic))
            for feed in self.feeds.values()]
        self._subscriptions: list[Subscription[Any]] = []

    @property
    def active(self) -> bool:
        return bool(self._subscriptions)

    def activate(self) -> None:
        for feed in self.feeds.values():
            group = MutuallyExclusiveCallbackGroup()
            events = SubscriptionEventCallbacks(message_lost=feed.on_message_lost)
            msg_type = CompressedImage if feed.config.transport == "compressed" else Image
            self._subscriptions.append(self._node.create_subscription(
                msg_type, feed.config.subscribed_topic, feed.on_image, self._qos,
                callback_group=group, event_callbacks=events))
            if feed.config.camera_info_topic:
                self._subscriptions.append(self._node.create_subscription(
                    CameraInfo, feed.config.camera_info_topic, feed.on_camera_info, self._qos,
                    callback_group=group))

    def deactivate(self) -> None:
        for sub in self._subscriptions:
            self._node.destroy_subscription(sub)
        self._subscriptions.clear()

    def cleanup(self) -> None:
        self.deactivate()
        self.feeds.clear()
        self._diagnostics.clear()

    def diagnostics(self) -> list[DiagnosticStatus]:
        return [d.status(active=self.active) for d in self._diagnostics]
