"""Click to segment: a click on a camera image becomes a tracked object.

Where clicks come from:

* ``geometry_msgs/Point`` on ``<image_topic>_mouse_left``: what rqt_image_view
  publishes for a left click on the image it shows (x, y in image pixels). The node
  also listens on ``~/<camera>/overlay_mouse_left``, so clicking on its own overlay
  works the same way.
* ``geometry_msgs/PointStamped`` on ``clicks.clicked_point_topic`` (RViz's "Publish
  Point" tool, ``/clicked_point``): a 3-D point, moved into the camera's optical frame
  (directly when it is already in it, else through tf2 when ``tf2_ros`` is importable)
  and projected with the camera's CameraInfo. The first camera it lands in takes it.

The clicked object is segmented on the camera's newest frame by SAM 2 alone (no
language-model pass), stored in the camera's memory bank and tracked from then on.
With ``clicks.mode = box`` two clicks on one camera (within ``clicks.box_timeout_s``)
give opposite corners of a box prompt instead. A click that cannot be used is
reported with a warning naming the reason and counted in ``/diagnostics``.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile

from unipixel_ros.frames import FrameDecodeError
from unipixel_ros.memory import MemoryBankError
from unipixel_ros.object_store import ObjectStore
from unipixel_ros.objects3d import quaternion_matrix
from unipixel_ros.prompts import BoxPrompt, PointPrompt, PromptError, validate_request
from unipixel_ros.ros.ingest import CameraFeed
from unipixel_ros.ros.model_host import BusyError, ModelHost, ModelUnavailableError
from unipixel_ros.ros.tracking import Tracker, overlay_topic
from unipixel_ros.ros.tf import listen_to_tf, stop_listening

CLICK_MODES: tuple[str, ...] = ("point", "box")
MOUSE_SUFFIX = "_mouse_left"


class ClickError(ValueError):
    """A click that cannot become a prompt; the message says why."""


@dataclass(frozen=True)
class ClickSettings:
    """The ``clicks.*`` parameters."""

    mode: str                       # "point" or "box"
    box_timeout_s: float            # box mode: the second corner must follow within this
    clicked_point_topic: str        # PointStamped topic (RViz Publish Point); empty = off


def project_to_pixel(point: np.ndarray, k: np.ndarray) -> tuple[float, float]:
    """A 3-D point in the camera's optical frame (z forward) -> pixel (u, v) through the pinhole K."""
    x, y, z = (float(v) for v in point)
    if not z > 0:
        raise ClickError(f"the point is not in front of the camera (z = {z:.3f} m in the optical frame)")
    u = k[0, 0] * x / z + k[0, 1] * y / z + k[0, 2]
    v = k[1, 1] * y / z + k[1, 2]
    return float(u), float(v)


def transform_point(translation: np.ndarray, rotation_xyzw: np.ndarray, point: np.ndarray) -> np.ndarray:
    """``R(q) @ point + t`` for a transform given as a translation and a quaternion (x, y, z, w)."""
    try:
        rotation = quaternion_matrix(rotation_xyzw)
    except ValueError as err:
        raise ClickError("the transform's rotation quaternion is zero") from err
    return rotation @ np.asarray(point, dtype=float) + np.asarray(translation, dtype=float)


@dataclass(frozen=True)
class ClickedObject:
    """The object a click created."""

    object_id: int                  # node-wide id in the object store
    stamp_ns: int                   # the frame it was segmented on
    pixels: int
    score: float


def click_description(where: tuple[float, ...]) -> str:
    return ("point ({:.1f}, {:.1f})".format(*where) if len(where) == 2 else
            "box ({:.1f}, {:.1f})-({:.1f}, {:.1f})".format(*where))


def segment_click(feed: CameraFeed, store: ObjectStore, host: ModelHost, camera: str,
                  where: tuple[float, ...]) -> ClickedObject:
    """Segment a clicked point (x, y) or box (x0, y0, x1, y1) on the camera's newest frame by
    SAM 2 alone and keep it in the store.

    Raises ClickError (no frame, nothing found), PromptError (outside the image) and the
    model host's and memory bank's errors.
    """
    epoch, frame = feed.window.latest_with_epoch()
    if frame is None:
        raise ClickError("no frames received yet")
    prompt = (PointPrompt(object_index=0, frame_index=0, x=where[0], y=where[1]) if len(where) == 2 else
              BoxPrompt(object_index=0, frame_index=0, x0=where[0], y0=where[1], x1=where[2], y1=where[3]))
    validate_request("", [prompt], 1, frame.width, frame.height)
    try:
        image = frame.image
    except FrameDecodeError as exc:
        raise ClickError(f"the newest frame does not decode, click again: {exc}") from exc
    with host.exclusive("click") as pipeline:
        obj = pipeline.segment_prompt([image], [frame.stamp_ns], prompt)
        mask, score = obj.masks[0], float(obj.scores[0])
        if not mask.any():
            raise ClickError("the model found no object there")
        # Kept before the model is free, so the tracking step after this request finds it to catch up.
        object_id = store.add(camera, obj.label, [(frame.stamp_ns, mask, score)], obj.tracking, epoch)
    return ClickedObject(object_id, frame.stamp_ns, int(mask.sum()), score)


class BoxCorners:
    """Box mode: pairs consecutive clicks on one camera into (x0, y0, x1, y1)."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._pending: dict[str, tuple[float, float, float]] = {}

    def click(self, camera: str, x: float, y: float, now_s: float) -> tuple[float, float, float, float] | None:
        """The box when this click completes one, else None (it becomes the first corner)."""
        first = self._pending.pop(camera, None)
        if first is None or now_s - first[2] > self._timeout_s:
            self._pending[camera] = (x, y, now_s)
            return None
        return min(first[0], x), min(first[1], y), max(first[0], x), max(first[1], y)


class ClickHandler:
    """Node component: click subscriptions, projection, segmentation and storage."""

    def __init__(self, node: Node, feeds: Mapping[str, CameraFeed], store: ObjectStore, host: ModelHost,
                 tracker: Tracker, settings: ClickSettings, qos: QoSProfile) -> None:
        self._node = node
        self._feeds = feeds
        self._store = store
        self._host = host
        self._tracker = tracker
        self._settings = settings
        self._qos = qos
        self._corners = BoxCorners(settings.box_timeout_s)
        self._subscriptions: list[Any] = []
        self._tf_buffer = self._tf_listener = None
        self._tf_note = ""
        self._lock = threading.Lock()
        self._received = self._created = self._ignored = 0
        self._last_problem = ""

    # -- lifecycle -------------------------------------------------------------------------

    def activate(self) -> None:
        group = MutuallyExclusiveCallbackGroup()     # clicks are handled one at a time, in order
        for camera, feed in self._feeds.items():
            for topic in (feed.config.image_topic + MOUSE_SUFFIX, overlay_topic(camera) + MOUSE_SUFFIX):
                self._subscriptions.append(self._node.create_subscription(
                    Point, topic, lambda msg, c=camera, t=topic: self.on_pixel(c, msg.x, msg.y, t),
                    self._qos, callback_group=group))
        if self._settings.clicked_point_topic:
            self._subscriptions.append(self._node.create_subscription(
                PointStamped, self._settings.clicked_point_topic, self.on_clicked_point, self._qos,
                callback_group=group))
            self._tf_buffer, self._tf_listener, self._tf_note = listen_to_tf(self._node)

    def deactivate(self) -> None:
        for sub in self._subscriptions:
            self._node.destroy_subscription(sub)
        self._subscriptions.clear()
        stop_listening(self._tf_listener)
        self._tf_buffer = self._tf_listener = None

    def cleanup(self) -> None:
        self.deactivate()

    # -- clicks ----------------------------------------------------------------------------

    def on_pixel(self, camera: str, x: float, y: float, source: str) -> None:
        """A click at pixel (x, y) of ``camera``'s image."""
        with self._lock:
            self._received += 1
        if self._settings.mode == "box":
            box = self._corners.click(camera, x, y, time.monotonic())
            if box is None:
                self._node.get_logger().info(f"box corner ({x:.1f}, {y:.1f}) on camera '{camera}' from {source}; "
                                             f"click the opposite corner within {self._settings.box_timeout_s:g} s")
                return
            self._segment(camera, box, source)
        else:
            self._segment(camera, (x, y), source)

    def on_clicked_point(self, msg: PointStamped) -> None:
        """A 3-D point: the first camera it projects into takes it as a click."""
        point = np.array([msg.point.x, msg.point.y, msg.point.z])
        reasons = []
        for camera, feed in self._feeds.items():
            try:
                u, v = self._project(camera, feed, point, msg.header.frame_id)
            except ClickError as exc:
                reasons.append(f"camera '{camera}': {exc}")
                continue
            self.on_pixel(camera, u, v, self._settings.clicked_point_topic)
            return
        with self._lock:
            self._received += 1
        self._ignore(f"clicked point ({point[0]:.3f}, {point[1]:.3f}, {point[2]:.3f}) in frame "
                     f"'{msg.header.frame_id}' ignored: " + "; ".join(reasons))

    def _project(self, camera: str, feed: CameraFeed, point: np.ndarray, source_frame: str) -> tuple[float, float]:
        frame = feed.window.latest()
        if frame is None:
            raise ClickError("no frames received yet")
        info = frame.camera_info or feed.camera_info
        if info is None:
            where = (f"on {feed.config.camera_info_topic}" if feed.config.camera_info_topic
                     else f"(set cameras.{camera}.camera_info_topic)")
            raise ClickError(f"no CameraInfo received {where}, so a 3-D point cannot be projected")
        u, v = project_to_pixel(self._to_optical_frame(point, source_frame, frame.frame_id), info.k)
        if not (0 <= u < frame.width and 0 <= v < frame.height):
            raise ClickError(f"projects to pixel ({u:.1f}, {v:.1f}), outside the {frame.width}x{frame.height} image")
        return u, v

    def _to_optical_frame(self, point: np.ndarray, source: str, target: str) -> np.ndarray:
        if source.lstrip("/") == target.lstrip("/"):
            return point
        if self._tf_buffer is None:
            raise ClickError(f"the point is in frame '{source}' but the images are in '{target}', and "
                             f"{self._tf_note}; publish the point in '{target}'")
        from rclpy.time import Time  # noqa: PLC0415

        try:
            stamped = self._tf_buffer.lookup_transform(target, source, Time())
        except Exception as exc:  # tf2's lookup, connectivity and extrapolation errors
            raise ClickError(f"no transform from '{source}' to '{target}': {exc}") from exc
        t, q = stamped.transform.translation, stamped.transform.rotation
        return transform_point(np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]), point)

    def _segment(self, camera: str, where: tuple[float, ...], source: str) -> None:
        """Segment the clicked point (x, y) or box (x0, y0, x1, y1) on the newest frame and keep it."""
        what = click_description(where)
        try:
            kept = segment_click(self._feeds[camera], self._store, self._host, camera, where)
        except (PromptError, ClickError, BusyError, ModelUnavailableError, MemoryBankError) as exc:
            self._ignore(f"click {what} on camera '{camera}' from {source} ignored: {exc}")
            return
        except Exception as exc:  # a failing model must not stop the click subscription
            self._node.get_logger().error(f"click segmentation failed: {traceback.format_exc()}")
            self._ignore(f"click {what} on camera '{camera}' failed: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            self._created += 1
        self._node.get_logger().info(
            f"click {what} on camera '{camera}' (frame {kept.stamp_ns} ns): object {kept.object_id}, "
            f"{kept.pixels} pixels, score {kept.score:.2f}")
        self._tracker.publish_stored(camera, kept.stamp_ns)

    def _ignore(self, message: str) -> None:
        with self._lock:
            self._ignored += 1
            self._last_problem = message
        self._node.get_logger().warning(message)

    def diagnostics(self) -> list[DiagnosticStatus]:
        with self._lock:
            received, created, ignored, last = self._received, self._created, self._ignored, self._last_problem
        return [DiagnosticStatus(
            level=DiagnosticStatus.OK, name=f"{self._node.get_fully_qualified_name()}: clicks",
            message=f"{created} objects from {received} clicks" + (f"; last ignored: {last}" if last else ""),
            values=[KeyValue(key="mode", value=self._settings.mode),
                    KeyValue(key="received", value=str(received)), KeyValue(key="created", value=str(created)),
                    KeyValue(key="ignored", value=str(ignored)), KeyValue(key="last_ignored", value=last),
                    KeyValue(key="transforms", value=self._tf_note or "points must be in the camera frame")])]
