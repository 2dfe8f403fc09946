"""Tracking the kept objects on new frames, and publishing what is known about them.

Per camera, a timer at ``tracking.rate_hz`` takes the newest frame (if it is new),
steps every object of the camera's memory bank onto it with the pipeline (SAM 2's
memory; skipped while a query or click holds the model) and publishes, stamped with
that frame's header:

* ``~/tracked_objects`` (``ObjectMasksArray``, all cameras on one topic, ``camera``
  says which): every kept object with its mask on the frame; an object that is not
  visible is listed with ``lost = true`` and an empty mask, never left out;
* ``~/<camera>/label_image`` (``mono16``, pixel = object id, 0 = background; lossless,
  PNG-compressible);
* ``~/<camera>/overlay`` (``bgr8`` picture for an RViz Image display or rqt_image_view,
  whose clicks on it come back as ``~/<camera>/overlay_mouse_left``).

The images are only drawn while someone subscribes. After a query or click adds objects,
the same outputs are published for the frame they were segmented on.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from rclpy.timer import Timer
from sensor_msgs.msg import Image

from unipixel_ros.frames import Frame
from unipixel_ros.msg import ObjectMasksArray
from unipixel_ros.object_store import ObjectStore, StoredObject
from unipixel_ros.rendering import MAX_LABEL_ID, OverlayObject, label_image, overlay
from unipixel_ros.ros.ingest import CameraFeed
from unipixel_ros.ros.messages import header, image_msg, object_masks_msg
from unipixel_ros.ros.model_host import ModelHost

TRACKED_OBJECTS_TOPIC = "~/tracked_objects"


def label_image_topic(camera: str) -> str:
    return f"~/{camera}/label_image"


def overlay_topic(camera: str) -> str:
    return f"~/{camera}/overlay"


@dataclass
class _CameraTracking:
    feed: CameraFeed
    label_pub: Publisher | None = None
    overlay_pub: Publisher | None = None
    timer: Timer | None = None
    last_stamp: int = -1            # newest frame published for
    steps: int = 0
    step_seconds: float = 0.0       # last tracking step's pipeline time
    failures: int = 0
    last_error: str = ""


def _frame_masks(objects: list[StoredObject], frame: Frame) -> list[tuple[StoredObject, np.ndarray]]:
    """Each object's mask on ``frame`` (empty where it has none or is lost)."""
    empty = np.zeros(frame.image.shape[:2], dtype=bool)
    out = []
    for obj in objects:
        mask = obj.mask_at(frame.stamp_ns)
        out.append((obj, empty if mask is None or obj.lost else mask))
    return out


class Tracker:
    """Node component: per-camera tracking timers and the tracked outputs."""

    def __init__(self, node: Node, feeds: Mapping[str, CameraFeed], store: ObjectStore, host: ModelHost,
                 rate_hz: float, qos: QoSProfile) -> None:
        self._node = node
        self._store = store
        self._host = host
        self._rate_hz = rate_hz
        self._qos = qos
        self._cameras = {name: _CameraTracking(feed) for name, feed in feeds.items()}
        self._tracked_pub: Publisher | None = None
        self._lock = threading.Lock()          # a tracking step and a query's publish_stored may race

    def activate(self) -> None:
        self._tracked_pub = self._node.create_publisher(ObjectMasksArray, TRACKED_OBJECTS_TOPIC, self._qos)
        for name, cam in self._cameras.items():
            cam.label_pub = self._node.create_publisher(Image, label_image_topic(name), self._qos)
            cam.overlay_pub = self._node.create_publisher(Image, overlay_topic(name), self._qos)
            if self._rate_hz > 0:
                cam.timer = self._node.create_timer(1.0 / self._rate_hz, lambda n=name: self.step(n),
                                                    callback_group=MutuallyExclusiveCallbackGroup())

    def deactivate(self) -> None:
        with self._lock:
            for cam in self._cameras.values():
                if cam.timer is not None:
                    self._node.destroy_timer(cam.timer)
                for pub in (cam.label_pub, cam.overlay_pub):
                    if pub is not None:
                        self._node.destroy_publisher(pub)
                cam.timer = cam.label_pub = cam.overlay_pub = None
            if self._tracked_pub is not None:
                self._node.destroy_publisher(self._tracked_pub)
                self._tracked_pub = None

    def cleanup(self) -> None:
        self.deactivate()

    # -- work -------------------------------------------------------------------------------

    def step(self, camera: str) -> None:
        """Track the camera's objects onto its newest frame (if new) and publish.

        Timer callback: a failure is logged and counted, never raised into the executor.
        """
        cam = self._cameras[camera]
        try:
            self._step(camera, cam)
        except Exception as exc:
            if not self._node.context.ok():     # shutting down under a running step
                return
            cam.failures += 1
            cam.last_error = f"{type(exc).__name__}: {exc}"
            self._node.get_logger().error(f"tracking on camera '{camera}' failed: {traceback.format_exc()}",
                                          throttle_duration_sec=10.0)

    def _step(self, camera: str, cam: _CameraTracking) -> None:
        frame = cam.feed.window.latest()
        if frame is None or frame.stamp_ns <= cam.last_stamp:
            return
        if len(self._store.bank(camera)):
            with self._host.if_idle() as pipeline:
                if pipeline is None:
                    return
                began = time.perf_counter()
                tracked = pipeline.track(self._store.bank(camera), frame.image, frame.stamp_ns)
                cam.step_seconds = time.perf_counter() - began
            self._store.record_tracking(camera, frame.stamp_ns, tracked)
            cam.steps += 1
            cam.last_error = ""
        self.publish(camera, frame)

    def publish_stored(self, camera: str, stamp_ns: int) -> None:
        """Publish the kept objects on a frame they were just segmented on (if it is still held)."""
        frame = self._cameras[camera].feed.window.nearest(stamp_ns, 0)
        if frame is not None:
            self.publish(camera, frame)

    def refresh(self, camera: str) -> None:
        """Publish again on the newest published frame (after objects were removed)."""
        self.publish_stored(camera, self._cameras[camera].last_stamp)

    def publish(self, camera: str, frame: Frame) -> None:
        """Publish every kept object of ``camera`` on ``frame``."""
        cam = self._cameras[camera]
        with self._lock:
            if self._tracked_pub is None:
                return
            cam.last_stamp = max(cam.last_stamp, frame.stamp_ns)
            masks = _frame_masks(self._store.objects(camera), frame)
            msg = ObjectMasksArray(header=header(frame.stamp_ns, frame.frame_id), camera=camera)
            for obj, mask in masks:
                score = obj.record.scores[obj.record.stamps.index(frame.stamp_ns)] \
                    if frame.stamp_ns in obj.record.stamps else 0.0
                msg.objects.append(object_masks_msg(obj.object_id, obj.label, score, not mask.any(),
                                                    [(frame.stamp_ns, frame.frame_id, mask)]))
            self._tracked_pub.publish(msg)
            if cam.label_pub.get_subscription_count():
                drawable = [(o.object_id, m) for o, m in masks if o.object_id <= MAX_LABEL_ID]
                if len(drawable) < len(masks):
                    self._node.get_logger().warning(
                        f"objects with ids above {MAX_LABEL_ID} are left out of the 16-bit label image; "
                        "ids restart from 1 only when the node restarts", throttle_duration_sec=10.0)
                labels = label_image(frame.image.shape[:2], drawable)
                cam.label_pub.publish(image_msg(labels, "mono16", frame.stamp_ns, frame.frame_id))
            if cam.overlay_pub.get_subscription_count():
                picture = overlay(frame.image, [OverlayObject(o.object_id, o.label, m, not m.any())
                                                for o, m in masks])
                cam.overlay_pub.publish(image_msg(picture, "bgr8", frame.stamp_ns, frame.frame_id))

    def diagnostics(self) -> list[DiagnosticStatus]:
        statuses = []
        skipped = self._host.stats().tracking_skipped
        for name, cam in self._cameras.items():
            objects = self._store.objects(name)
            lost = sum(o.lost for o in objects)
            level = DiagnosticStatus.WARN if cam.last_error else DiagnosticStatus.OK
            message = (f"last step failed: {cam.last_error}" if cam.last_error else
                       f"{len(objects)} objects ({lost} lost)" if self._rate_hz > 0 else "tracking off")
            statuses.append(DiagnosticStatus(
                level=level, name=f"{self._node.get_name()}: tracking {name}", message=message,
                values=[KeyValue(key="objects", value=str(len(objects))), KeyValue(key="lost", value=str(lost)),
                        KeyValue(key="steps", value=str(cam.steps)),
                        KeyValue(key="step_seconds", value=f"{cam.step_seconds:.3f}"),
                        KeyValue(key="failures", value=str(cam.failures)),
                        KeyValue(key="skipped_model_busy", value=str(skipped)),
                        KeyValue(key="rate_hz", value=f"{self._rate_hz:g}")]))
        return statuses
