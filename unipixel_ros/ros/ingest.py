"""Camera subscriptions feeding one :class:`FrameWindow` per camera.

:class:`CameraFeed` is one camera's path from message to window: stamp checks
first (duplicates and decimated frames are never decoded), then conversion,
then insertion. Every frame that is not stored is counted under a reason, and a
warning is logged at most once per reason every :data:`WARN_PERIOD_S`; nothing
a publisher sends can raise out of the callback.

A compressed frame is not decoded on arrival: only its header is read (size, codec,
end marker; what fails there is dropped at once), and the window keeps its bytes until
a query, click or tracking step needs its pixels (:class:`~unipixel_ros.frames.Frame`).
A frame that then does not decode leaves the window and is counted under the same
drop reasons (it was counted as stored on arrival as well).

:class:`CameraIngest` is the node component that owns the feeds: built at
configure, it subscribes on activate and unsubscribes on deactivate (windows
keep their frames while inactive, and are dropped at cleanup). Each camera has
its own mutually exclusive callback group, so one camera's frames are handled
in order while cameras run in parallel under a multi-threaded executor.

A camera with ``depth_topic`` also gets its depth images (decoded to metres, kept in the
same window) and optionally their own CameraInfo. A depth image that cannot be used is
counted under ``depth_dropped.<reason>`` (bad_encoding, truncated, bad_size, ...); a
colour frame that gets no 3-D is counted under ``no_3d.<reason>`` when it is used
(:meth:`CameraFeed.registered_depth`): no depth yet, too far in time, size mismatch,
calibrations that do not scale. Both show in a ``camera <name> depth`` status.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.node import Node
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from unipixel_ros.frames import (
    NS_PER_S,
    Admission,
    CameraIntrinsics,
    DepthImage,
    EncodedImage,
    Frame,
    FrameWindow,
    WindowLimits,
)
from unipixel_ros.objects3d import DepthError, DepthSettings, decode_depth, resample_to_colour
from unipixel_ros.ros.conversions import (
    ConverterUnavailable,
    ImageConverter,
    ImageDecodeError,
    camera_intrinsics,
    compressed_header,
    make_converter,
)
from unipixel_ros.ros.diagnostics import CameraDiagnostics
from unipixel_ros.ros.params import CameraConfig, NodeConfig, ParameterError
from unipixel_ros.ros.qos import qos_profile

WARN_PERIOD_S = 5.0
CONVERSION_FAILURE = "conversion_failure"   # an exception the converter did not classify


def _drop_reason(error: Exception) -> tuple[str, str]:
    """(reason, detail) of a frame the converter refused, or failed on."""
    if isinstance(error, ImageDecodeError):
        return error.reason, str(error)
    return CONVERSION_FAILURE, f"{type(error).__name__}: {error}"


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
                 logger: RcutilsLogger, clock: Callable[[], float] = time.monotonic,
                 arrival_clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` paces the drop warnings; ``arrival_clock`` is the window's (when a frame
        arrived: a recording's replay passes the recorded receive time)."""
        self.config = config
        self.window = FrameWindow(limits, arrival_clock, on_undecodable=self._undecodable)
        self._converter = converter
        self._frame = self._encoded_frame if config.transport == "compressed" else self._decoded_frame
        self._logger = logger
        self._throttle = _WarnThrottle(WARN_PERIOD_S, clock)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._last_drop = ""
        self._camera_info: CameraIntrinsics | None = None
        self._depth_info: CameraIntrinsics | None = None
        self._depth_counts: Counter[str] = Counter()
        self._depth_dropped: Counter[str] = Counter()
        self._no_3d: Counter[str] = Counter()
        self._last_depth_problem = ""

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
                frame = self._frame(msg, stamp)
            except Exception as exc:  # a converter fault must not take the node down
                return self._drop(*_drop_reason(exc))
            verdict = self.window.insert(frame)
        if verdict.is_drop:
            return self._drop(verdict.value, f"stamp {stamp} ns")
        self._bump(verdict.value)
        return verdict.value

    def _decoded_frame(self, msg: Image, stamp: int) -> Frame:
        return Frame(self._converter.raw(msg), stamp, msg.header.frame_id, self._camera_info)

    def _encoded_frame(self, msg: CompressedImage, stamp: int) -> Frame:
        """The frame of a compressed message, its header checked, its pixels left to decode when used."""
        head = compressed_header(msg)
        encoded = EncodedImage(msg.data, msg.format, head.height, head.width, self._converter.compressed)
        return Frame.from_encoded(encoded, stamp, msg.header.frame_id, self._camera_info)

    def _undecodable(self, frame: Frame, error: Exception) -> None:
        """The window's report of a stored frame that did not decode when used."""
        reason, detail = _drop_reason(error)
        self._drop(reason, f"frame {frame.stamp_ns} ns, decoded when used: {detail}")

    def on_depth(self, msg: Image) -> str:
        """Depth subscription callback; returns "stored" or why the image was dropped."""
        stamp = stamp_ns(msg.header.stamp)
        with self._lock:
            self._depth_counts["received"] += 1
        try:
            depth = decode_depth(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)
            verdict = self.window.insert_depth(DepthImage(depth, stamp, msg.header.frame_id, self._depth_info))
        except DepthError as exc:
            return self._depth_problem(self._depth_dropped, exc.reason, str(exc), "dropped a depth image")
        except Exception as exc:  # nothing a publisher sends may raise out of the callback
            return self._depth_problem(self._depth_dropped, CONVERSION_FAILURE, f"{type(exc).__name__}: {exc}",
                                       "dropped a depth image")
        if verdict is not Admission.STORED:
            return self._depth_problem(self._depth_dropped, verdict.value, f"stamp {stamp} ns",
                                       "dropped a depth image")
        with self._lock:
            self._depth_counts["stored"] += 1
        return verdict.value

    def on_depth_info(self, msg: CameraInfo) -> None:
        self._depth_info = camera_intrinsics(msg)
        with self._lock:
            self._depth_counts["camera_infos"] += 1

    def registered_depth(self, frame: Frame, settings: DepthSettings) -> np.ndarray:
        """The depth paired with ``frame``, in metres on the colour pixel grid.

        Raises :class:`DepthError` naming why there is none (each reason counted under
        ``no_3d``): no depth topic, no depth image yet, the nearest one further off in time
        than ``depth.max_stamp_offset_s``, no colour CameraInfo, a size that differs without
        both calibrations, or calibrations that are not a pure scaling of one another.
        """
        try:
            if not self.config.depth_topic:
                raise DepthError("no_depth_topic", f"set cameras.{self.name}.depth_topic for 3-D")
            depth, offset = self.window.depth_near(frame.stamp_ns)
            if depth is None:
                raise DepthError("no_depth_yet", f"no depth image received on {self.config.depth_topic}")
            if offset > settings.max_stamp_offset_ns:
                raise DepthError("stamp_offset", f"nearest depth image is {offset / NS_PER_S:.3f} s from the frame "
                                 f"(depth.max_stamp_offset_s = {settings.max_stamp_offset_s:g})")
            colour_info = frame.camera_info or self._camera_info
            if colour_info is None:
                raise DepthError("no_camera_info", f"no CameraInfo for camera '{self.name}' (set cameras."
                                 f"{self.name}.camera_info_topic), so depth cannot become points")
            if depth.depth_m.shape == (frame.height, frame.width):
                return depth.depth_m
            depth_info = depth.camera_info
            if depth_info is None:
                raise DepthError("size_mismatch", f"depth is {depth.depth_m.shape[1]}x{depth.depth_m.shape[0]}, "
                                 f"colour {frame.width}x{frame.height}, and no depth CameraInfo maps one onto "
                                 f"the other (set cameras.{self.name}.depth_camera_info_topic)")
            return resample_to_colour(depth.depth_m, depth_info.k, colour_info.k, (frame.height, frame.width))
        except DepthError as exc:
            if exc.reason != "no_depth_topic":
                self._depth_problem(self._no_3d, exc.reason, str(exc), f"frame {frame.stamp_ns} ns has no 3-D")
            raise

    def count_no_3d(self, reason: str, detail: str) -> None:
        """Count an object left without 3-D for a reason found after pairing (e.g. too few points)."""
        with self._lock:
            self._no_3d[reason] += 1
            self._last_depth_problem = f"{reason}: {detail}"

    def _depth_problem(self, counter: Counter[str], reason: str, detail: str, what: str) -> str:
        with self._lock:
            counter[reason] += 1
            self._last_depth_problem = f"{reason}: {detail}"
        held = self._throttle(f"depth.{reason}")
        if held is not None:
            more = f" ({held} more since the last report)" if held else ""
            self._logger.warning(f"camera '{self.name}': {what}, {reason}: {detail}{more}")
        return reason

    def depth_status(self, node_name: str, active: bool) -> DiagnosticStatus:
        """The ``camera <name> depth`` status: depth images received and dropped, frames without 3-D."""
        with self._lock:
            counts, dropped, no_3d = dict(self._depth_counts), dict(self._depth_dropped), dict(self._no_3d)
            last = self._last_depth_problem
        stats = self.window.stats()
        values = [KeyValue(key="topic", value=self.config.depth_topic),
                  KeyValue(key="camera_info_topic", value=self.config.depth_camera_info_topic),
                  *(KeyValue(key=k, value=str(counts.get(k, 0))) for k in ("received", "stored", "camera_infos")),
                  KeyValue(key="depth_held", value=str(stats.depth_frames)),
                  *(KeyValue(key=f"depth_dropped.{r}", value=str(n)) for r, n in sorted(dropped.items())),
                  *(KeyValue(key=f"no_3d.{r}", value=str(n)) for r, n in sorted(no_3d.items())),
                  KeyValue(key="last_problem", value=last)]
        if not active:
            level, message = DiagnosticStatus.OK, "inactive"
        elif not counts.get("received"):
            level, message = DiagnosticStatus.WARN, f"no depth received on {self.config.depth_topic}; 2-D only"
        elif last:
            level, message = DiagnosticStatus.WARN, f"last problem: {last}"
        else:
            level, message = DiagnosticStatus.OK, f"{counts.get('stored', 0)} depth images stored"
        return DiagnosticStatus(level=level, name=f"{node_name}: camera {self.name} depth", message=message,
                                values=values)

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
            if feed.config.depth_topic:
                self._subscriptions.append(self._node.create_subscription(
                    Image, feed.config.depth_topic, feed.on_depth, self._qos, callback_group=group))
            if feed.config.depth_camera_info_topic:
                self._subscriptions.append(self._node.create_subscription(
                    CameraInfo, feed.config.depth_camera_info_topic, feed.on_depth_info, self._qos,
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
        name = self._node.get_fully_qualified_name()
        return [*(d.status(active=self.active) for d in self._diagnostics),
                *(f.depth_status(name, self.active) for f in self.feeds.values() if f.config.depth_topic)]
