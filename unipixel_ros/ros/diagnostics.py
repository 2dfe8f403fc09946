"""``/diagnostics``: what each camera feed is doing, in the standard DiagnosticArray form.

Publishes directly rather than through ``diagnostic_updater`` (not installable
from PyPI); the topic, message and QoS are the ones the updater uses, so
``rqt_runtime_monitor`` and ``diagnostic_aggregator`` read it the same way.

Rates are measured between two consecutive reports, so each status describes
the last period: ``rate_hz`` (messages received per second), ``stored_rate_hz``
(frames that entered the window) and ``window_rate_hz`` (from the held frames'
own stamps, the camera's rate as the camera sees it).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile

if TYPE_CHECKING:
    from unipixel_ros.ros.ingest import CameraFeed, FeedCounters

DIAGNOSTICS_TOPIC = "/diagnostics"     # fixed by the diagnostics convention
StatusSource = Callable[[], Sequence[DiagnosticStatus]]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, float):
        value = f"{value:.3f}"
    return KeyValue(key=key, value=str(value))


class CameraDiagnostics:
    """Turns one feed's counters and window into a status, with rates over the last report."""

    def __init__(self, node_name: str, feed: CameraFeed, topic: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = f"{node_name}: camera {feed.name}"
        self._feed = feed
        self._topic = topic
        self._clock = clock
        self._prev = feed.counters()
        self._prev_t = clock()

    def status(self, active: bool) -> DiagnosticStatus:
        feed = self._feed
        now, counters, window = self._clock(), feed.counters(), feed.window.stats()
        dt = max(now - self._prev_t, 1e-9)
        received = counters.received - self._prev.received
        stored = counters.stored - self._prev.stored
        dropped = counters.dropped_total - self._prev.dropped_total
        self._prev, self._prev_t = counters, now

        latest = feed.window.latest()
        fill = window.fill
        values = [
            _kv("topic", self._topic),
            _kv("transport", feed.config.transport),
            _kv("rate_hz", received / dt),
            _kv("stored_rate_hz", stored / dt),
            _kv("window_rate_hz", (window.frames - 1) / window.span_s if window.span_s > 0 else 0.0),
            _kv("frames_held", window.frames),
            _kv("bytes_held", window.bytes),
            _kv("span_s", window.span_s),
            _kv("fill_frames", fill["frames"]),
            _kv("fill_bytes", fill["bytes"]),
            _kv("fill_duration", fill["duration"]),
            _kv("received", counters.received),
            _kv("stored", counters.stored),
            _kv("decimated", counters.decimated),
            _kv("held_stamp_jump", counters.held_stamp_jump),
            _kv("evicted", window.evicted),
            _kv("stamp_resets", window.stamp_resets),
            _kv("stamp_outliers", window.stamp_outliers),
            _kv("dropped", counters.dropped_total),
            *(_kv(f"dropped.{reason}", n) for reason, n in sorted(counters.dropped.items())),
            _kv("lost_in_transport", counters.lost_in_transport),
            _kv("last_drop", counters.last_drop),
            _kv("camera_info", _describe_info(feed, counters)),
        ]
        if not active:
            level, message = DiagnosticStatus.OK, "inactive"
        elif dropped:
            level = DiagnosticStatus.WARN
            message = f"dropped {dropped} frames in the last {dt:.1f} s; last: {counters.last_drop}"
        elif not received:
            level, message = DiagnosticStatus.WARN, f"no frames received on {self._topic}"
        else:
            level = DiagnosticStatus.OK
            message = f"{received / dt:.1f} Hz, {window.frames} frames ({window.bytes / 2**20:.1f} MiB) held"
        return DiagnosticStatus(level=level, name=self._name, message=message,
                                hardware_id=latest.frame_id if latest else "", values=values)


def _describe_info(feed: CameraFeed, counters: FeedCounters) -> str:
    if not feed.config.camera_info_topic:
        return "not subscribed"
    info = feed.camera_info
    return f"{info.width}x{info.height}, {counters.camera_infos} received" if info else "none received"


class DiagnosticsPublisher:
    """Collects statuses from its sources every period and publishes them as one array."""

    def __init__(self, node: Node, period_s: float, sources: Sequence[StatusSource]) -> None:
        self._node = node
        self._sources = list(sources)
        # What diagnostic_updater uses: reliable, keep last 10 (rclpy's default profile).
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, QoSProfile(depth=10))
        self._timer = node.create_timer(period_s, self.publish,
                                        callback_group=MutuallyExclusiveCallbackGroup())

    def publish(self) -> None:
        msg = DiagnosticArray(status=[s for source in self._sources for s in source()])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._pub)
