"""Tracking the kept objects on new frames, and publishing what is known about them.

Every camera asks for a step at ``tracking.rate_hz``; one scheduler
(:mod:`unipixel_ros.tracking_schedule`) shares the model between them, most overdue
camera first. A step takes the camera's newest frame (if it is new), steps every object
of the camera's memory bank onto it with the pipeline (SAM 2's memory; skipped while a
query or click holds the model) and publishes, stamped with that frame's header:

* ``~/tracked_objects`` (``ObjectMasksArray``, all cameras on one topic, ``camera``
  says which): every kept object with its mask on the frame; an object that is not
  visible is listed with ``lost = true`` and an empty mask, never left out;
* ``~/<camera>/label_image`` (``mono16``, pixel = object id, 0 = background; lossless,
  PNG-compressible);
* ``~/<camera>/overlay`` (``bgr8`` picture for an RViz Image display or rqt_image_view,
  whose clicks on it come back as ``~/<camera>/overlay_mouse_left``).

The images are only drawn while someone subscribes. After a query or click adds objects,
the same outputs are published for the frame they were segmented on. The first step after
requests held the model first tracks objects left behind through the frames they missed
(:class:`CatchUp`).

"New frame" means newer than the last one published, on the camera's current timeline:
the frame window owns it (:attr:`~unipixel_ros.frames.FrameWindow.epoch`). When the
camera's stamps jump back (a bag played in a loop, a simulator reset) the epoch moves
on, the tracker forgets the old timeline's last stamp, the object store drops the old
masks, and the kept objects go on being tracked from their tracker state; diagnostics
say so for a while.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from rclpy.timer import Timer
from sensor_msgs.msg import Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from unipixel_ros.frames import Frame, FrameDecodeError
from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.msg import ObjectMasksArray
from unipixel_ros.object_store import ObjectStore, StoredObject
from unipixel_ros.rendering import MAX_LABEL_ID, OverlayObject, label_image, overlay
from unipixel_ros.results import QueryPipeline, TrackedMask
from unipixel_ros.ros.ingest import CameraFeed
from unipixel_ros.ros.messages import header, image_msg, object_masks_msg
from unipixel_ros.ros.objects3d_output import Located, Locator, Outputs3D, markers_topic, object3d_msg, points_topic
from unipixel_ros.ros.model_host import ModelHost
from unipixel_ros.tracking_schedule import StepOutcome, StepScheduler

TRACKED_OBJECTS_TOPIC = "~/tracked_objects"
TIMELINE_NOTICE_S = 10.0       # how long the status tells that a camera's stamps jumped back
SPACING_TOLERANCE = 0.75        # catch-up frames: a camera's jitter may bring two frames this much closer


def label_image_topic(camera: str) -> str:
    return f"~/{camera}/label_image"


def overlay_topic(camera: str) -> str:
    return f"~/{camera}/overlay"


@dataclass
class _CameraTracking:
    feed: CameraFeed
    epoch: int = 0                  # the window's timeline that last_stamp belongs to
    last_stamp: int = -1            # newest frame published for
    timeline_changed_at: float | None = None   # monotonic time the stamps last jumped back
    steps: int = 0
    caught_up: int = 0              # past frames stepped to bring objects up to the newest
    requests_seen: int = 0          # requests the model host had served at this camera's last step
    step_seconds: float = 0.0       # last tracking step's pipeline time
    failures: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class CatchUp:
    """How a tracking step brings objects left behind up to the newest frame.

    SAM 2 follows an object from frame to frame. An object whose newest mask is older than
    the frames a step would skip over (its query took seconds, or the model was busy
    with requests) would jump straight to the newest frame, and a shape that moved far
    meanwhile is then lost or mistaken. Instead the first step after requests (queries,
    clicks, on any camera) held the model tracks them through the held frames in between,
    spaced as tracking at ``rate_hz`` would have seen them, going back at most ``max_frames``
    of them from the newest (0 = never), and then through those that came meanwhile, before
    it publishes the newest. A model that is merely slower than ``rate_hz`` does not catch up
    (it would never have stepped those frames, and stepping them would only make it slower),
    and neither does a camera whose steps waited for another camera's catching up: with a
    slow model the cameras would take turns catching up with each other and track at a
    fraction of the rate.
    """

    max_frames: int = 0
    rate_hz: float = 0.0            # 0: every held frame

    @property
    def spacing_ns(self) -> int:
        """The least stamp difference between two frames stepped in turn."""
        return round(SPACING_TOLERANCE * 1e9 / self.rate_hz) if self.rate_hz > 0 else 1

    def spaced(self, later: Frame, earlier: Frame) -> bool:
        """Whether tracking at the rate would step ``later`` after ``earlier``."""
        return later.stamp_ns - earlier.stamp_ns >= self.spacing_ns

    def frames(self, held: Sequence[Frame], newest_masks: Mapping[int, int | None], stamp_ns: int) -> list[Frame]:
        """The held frames to step through before frame ``stamp_ns``, oldest first: the newest
        ones, at most ``max_frames``.

        ``newest_masks`` is each tracked object's newest mask stamp (None: it holds none, as
        after the camera's stamps jumped back, and has nothing to catch up from).
        """
        behind = [s for s in newest_masks.values() if s is not None and s < stamp_ns]
        if self.max_frames <= 0 or not behind:
            return []
        since = min(behind)
        chosen: list[Frame] = []
        after = stamp_ns
        for frame in reversed(held):
            if len(chosen) == self.max_frames or frame.stamp_ns - since < self.spacing_ns:
                break
            if after - frame.stamp_ns >= self.spacing_ns:
                chosen.append(frame)
                after = frame.stamp_ns
        return chosen[::-1]


def _frame_masks(objects: list[StoredObject], frame: Frame) -> list[tuple[StoredObject, np.ndarray]]:
    """Each object's mask on ``frame`` (empty where it has none or is lost)."""
    empty = np.zeros((frame.height, frame.width), dtype=bool)
    out = []
    for obj in objects:
        mask = obj.mask_at(frame.stamp_ns)
        out.append((obj, empty if mask is None or obj.lost else mask))
    return out


@dataclass(frozen=True)
class FrameOutputs:
    """Every kept object of one camera with its mask on one frame: what is published for it."""

    camera: str
    frame: Frame
    masks: list[tuple[StoredObject, np.ndarray]]
    located: list[Located] | None = None     # each object's 3-D, on cameras with depth

    def tracked_objects(self) -> ObjectMasksArray:
        """The ``~/tracked_objects`` message, stamped with the frame's header."""
        frame = self.frame
        msg = ObjectMasksArray(header=header(frame.stamp_ns, frame.frame_id), camera=self.camera)
        located = self.located or [None] * len(self.masks)
        for (obj, mask), where in zip(self.masks, located):
            score = obj.record.scores[obj.record.stamps.index(frame.stamp_ns)] \
                if frame.stamp_ns in obj.record.stamps else 0.0
            msg.objects.append(object_masks_msg(obj.object_id, obj.label, score, not mask.any(),
                                                [(frame.stamp_ns, frame.frame_id, mask)],
                                                object3d_msg(where, frame.stamp_ns) if where else None))
        return msg

    def objects_3d(self) -> list[tuple[int, str, Located]]:
        """(id, label, 3-D) of every object, for the markers and the point cloud."""
        return [(o.object_id, o.label, w) for (o, _), w in zip(self.masks, self.located or [])]

    @property
    def undrawable(self) -> int:
        """Objects whose ids do not fit the 16-bit label image."""
        return sum(o.object_id > MAX_LABEL_ID for o, _ in self.masks)

    def label_image(self) -> Image:
        """The ``mono16`` label image (objects with ids above :data:`MAX_LABEL_ID` left out)."""
        drawable = [(o.object_id, m) for o, m in self.masks if o.object_id <= MAX_LABEL_ID]
        labels = label_image((self.frame.height, self.frame.width), drawable)
        return image_msg(labels, "mono16", self.frame.stamp_ns, self.frame.frame_id)

    def overlay(self) -> Image:
        """The ``bgr8`` overlay picture."""
        picture = overlay(self.frame.image, [OverlayObject(o.object_id, o.label, m, not m.any())
                                             for o, m in self.masks])
        return image_msg(picture, "bgr8", self.frame.stamp_ns, self.frame.frame_id)


class TrackingCore:
    """Tracking steps and what they publish, without ROS entities: the node's :class:`Tracker`
    runs it on its timer and publishers, an offline replay of a recording on every frame.

    ``emit`` receives the outputs of every frame published for; None (inactive) publishes
    nothing. ``logger`` takes ``warning``.
    """

    def __init__(self, feeds: Mapping[str, CameraFeed], store: ObjectStore, host: ModelHost, logger: Any,
                 clock: Callable[[], float] = time.monotonic, locator: Locator | None = None,
                 catch_up: CatchUp | None = None) -> None:
        """``locator`` adds each object's 3-D on the cameras with depth; ``catch_up`` says how
        objects left behind by a long request are stepped up to the newest frame."""
        self._store = store
        self._catch_up = catch_up or CatchUp()
        self._locator = locator
        self._host = host
        self._logger = logger
        self._clock = clock
        self.cameras = {name: _CameraTracking(feed, epoch=feed.window.epoch) for name, feed in feeds.items()}
        self.emit: Callable[[FrameOutputs], None] | None = None
        self.lock = threading.Lock()           # a tracking step and a query's publish_stored may race

    def step(self, camera: str) -> StepOutcome:
        """Track the camera's objects onto its newest frame (if new) and publish; raises what fails."""
        cam = self.cameras[camera]
        epoch, frame = cam.feed.window.latest_with_epoch()
        with self.lock:
            self._follow_timeline(camera, cam, epoch)
            if frame is None or frame.stamp_ns <= cam.last_stamp:
                return StepOutcome.NO_NEW_FRAME
        bank = self._store.bank(camera)
        if len(bank):
            try:
                frame.image                # decoded now, before the model is taken; the window keeps it
            except FrameDecodeError:       # it has left the window; the camera's drops count it
                return StepOutcome.NO_NEW_FRAME
            with self._host.if_idle(camera) as pipeline:
                if pipeline is None:
                    return StepOutcome.MODEL_BUSY
                began = time.perf_counter()
                served = self._host.served
                tracked = None
                if served != cam.requests_seen:
                    frame, tracked = self._catch_up_to(camera, cam, pipeline, bank, frame, epoch)
                    if frame is None:
                        return StepOutcome.MODEL_BUSY      # a request came first; catch up after it
                if tracked is None:
                    tracked = pipeline.track(bank, frame.image, frame.stamp_ns)
                cam.requests_seen = served
                cam.step_seconds = time.perf_counter() - began
            self._store.record_tracking(camera, frame.stamp_ns, tracked, epoch)
            cam.steps += 1
            cam.last_error = ""
        self.publish(camera, frame, epoch)
        return StepOutcome.STEPPED

    def _catch_up_to(self, camera: str, cam: _CameraTracking, pipeline: QueryPipeline, bank: ObjectMemoryBank,
                     frame: Frame, epoch: int) -> tuple[Frame | None, dict[int, TrackedMask] | None]:
        """Step the objects behind ``frame`` through the held frames before it (see :class:`CatchUp`).

        Returns the frame to publish and, when catching up stopped early for a waiting request,
        what the step onto it gave (None: it is still to be stepped onto); the frame is None when
        a request waited before anything was stepped. Frames keep coming meanwhile: once caught
        up with ``frame``, a newer one at least a tracking period later becomes the target, as
        long as each round is shorter than the one before (so it ends; a model too slow to close
        the gap leaves the rest to the steps at the rate).
        """
        stepped: tuple[Frame, dict[int, TrackedMask]] | None = None
        past_frames = self._catch_up.frames(cam.feed.window.snapshot(), bank.newest_tracked(), frame.stamp_ns)
        while past_frames:
            for past in past_frames:
                if self._host.requests_waiting or cam.feed.window.epoch != epoch:
                    return stepped if stepped else (None, None)
                try:
                    moved = pipeline.track(bank, past.image, past.stamp_ns)
                except FrameDecodeError:            # it has left the window; the camera's drops count it
                    continue
                if stepped is not None:
                    self._store.record_tracking(camera, stepped[0].stamp_ns, stepped[1], epoch)
                stepped = (past, moved)
                cam.caught_up += 1
            newer_epoch, newer = cam.feed.window.latest_with_epoch()
            if newer is None or newer_epoch != epoch or not self._catch_up.spaced(newer, frame):
                break
            next_frames = self._catch_up.frames(cam.feed.window.snapshot(), bank.newest_tracked(), newer.stamp_ns)
            if len(next_frames) >= len(past_frames):
                break                               # not closing in: the steps at the rate take it from here
            try:
                newer.image
            except FrameDecodeError:                # the last target stays; the camera's drops count this one
                break
            frame, past_frames = newer, next_frames
        if stepped is not None:
            self._store.record_tracking(camera, stepped[0].stamp_ns, stepped[1], epoch)
        return frame, None

    def _follow_timeline(self, camera: str, cam: _CameraTracking, epoch: int) -> None:
        """Forget the last stamp once the camera's window started a new timeline (holds ``self.lock``)."""
        if epoch > cam.epoch:
            self._logger.warning(
                f"camera '{camera}': stamps jumped back (last tracked frame {cam.last_stamp} ns); tracking "
                "goes on on the new timeline, kept objects keep their ids, their old masks are dropped")
            cam.epoch, cam.last_stamp, cam.timeline_changed_at = epoch, -1, self._clock()

    def publish_stored(self, camera: str, stamp_ns: int) -> None:
        """Publish the kept objects on a frame they were just segmented on (if it is still held)."""
        window = self.cameras[camera].feed.window
        epoch = window.epoch
        frame = window.nearest(stamp_ns, 0)
        if frame is not None:
            self.publish(camera, frame, epoch)

    def refresh(self, camera: str) -> None:
        """Publish again on the newest published frame (after objects were removed)."""
        self.publish_stored(camera, self.cameras[camera].last_stamp)

    def publish(self, camera: str, frame: Frame, epoch: int) -> None:
        """Publish every kept object of ``camera`` on ``frame`` (of timeline ``epoch``)."""
        cam = self.cameras[camera]
        with self.lock:
            if self.emit is None or epoch != cam.feed.window.epoch:
                return                          # inactive, or the frame's timeline has ended
            self._follow_timeline(camera, cam, epoch)
            cam.last_stamp = max(cam.last_stamp, frame.stamp_ns)
            masks = _frame_masks(self._store.objects(camera), frame)
            located = None
            if self._locator is not None and cam.feed.config.depth_topic:
                located = self._locator.locate(camera, frame, [m for _, m in masks])
            try:
                self.emit(FrameOutputs(camera, frame, masks, located))
            except FrameDecodeError:    # drawing the overlay found the frame corrupt: it has left the window
                pass


class Tracker:
    """Node component: the tracking scheduler and the tracked outputs."""

    def __init__(self, node: Node, feeds: Mapping[str, CameraFeed], store: ObjectStore, host: ModelHost,
                 rate_hz: float, qos: QoSProfile, clock: Callable[[], float] = time.monotonic,
                 locator: Locator | None = None, catch_up: CatchUp | None = None) -> None:
        """``locator`` adds the objects' 3-D (``Object3D``, markers, points) on cameras with depth;
        ``catch_up``: see :class:`CatchUp`."""
        self._node = node
        self._store = store
        self._host = host
        self._rate_hz = rate_hz
        self._qos = qos
        self._clock = clock
        self.core = TrackingCore(feeds, store, host, node.get_logger(), clock, locator, catch_up)
        self._locator = locator
        self._cameras = self.core.cameras
        self._tracked_pub: Publisher | None = None
        self._label_pubs: dict[str, Publisher] = {}
        self._overlay_pubs: dict[str, Publisher] = {}
        self._markers_pubs: dict[str, Publisher] = {}
        self._points_pubs: dict[str, Publisher] = {}
        self._outputs_3d = Outputs3D()
        self._scheduler: StepScheduler | None = None
        self._timer: Timer | None = None

    def activate(self) -> None:
        self._tracked_pub = self._node.create_publisher(ObjectMasksArray, TRACKED_OBJECTS_TOPIC, self._qos)
        for name in self._cameras:
            self._label_pubs[name] = self._node.create_publisher(Image, label_image_topic(name), self._qos)
            self._overlay_pubs[name] = self._node.create_publisher(Image, overlay_topic(name), self._qos)
            if self._locator is not None and self._cameras[name].feed.config.depth_topic:
                self._markers_pubs[name] = self._node.create_publisher(MarkerArray, markers_topic(name), self._qos)
                self._points_pubs[name] = self._node.create_publisher(PointCloud2, points_topic(name), self._qos)
        with self.core.lock:
            self.core.emit = self._publish_outputs
        if self._rate_hz > 0:
            scheduler = StepScheduler(list(self._cameras), self._rate_hz, self._clock)
            self._scheduler = scheduler
            self._timer = self._node.create_timer(scheduler.tick_s, lambda: scheduler.run_due(self.step),
                                                  callback_group=MutuallyExclusiveCallbackGroup())

    def deactivate(self) -> None:
        with self.core.lock:
            self.core.emit = None
            if self._timer is not None:
                self._node.destroy_timer(self._timer)
                self._timer = None
            for pubs in (self._label_pubs, self._overlay_pubs, self._markers_pubs, self._points_pubs):
                for pub in pubs.values():
                    self._node.destroy_publisher(pub)
                pubs.clear()
            if self._tracked_pub is not None:
                self._node.destroy_publisher(self._tracked_pub)
                self._tracked_pub = None

    def cleanup(self) -> None:
        self.deactivate()

    # -- work -------------------------------------------------------------------------------

    def step(self, camera: str) -> StepOutcome:
        """Track the camera's objects onto its newest frame (if new) and publish.

        Called by the scheduler's timer: a failure is logged and counted, never raised into
        the executor (the camera's turn is used, so a failing camera does not keep it).
        """
        cam = self._cameras[camera]
        try:
            return self.core.step(camera)
        except Exception as exc:
            if not self._node.context.ok():     # shutting down under a running step
                return StepOutcome.NO_NEW_FRAME
            cam.failures += 1
            cam.last_error = f"{type(exc).__name__}: {exc}"
            self._node.get_logger().error(f"tracking on camera '{camera}' failed: {traceback.format_exc()}",
                                          throttle_duration_sec=10.0)
            return StepOutcome.FAILED

    def publish_stored(self, camera: str, stamp_ns: int) -> None:
        """Publish the kept objects on a frame they were just segmented on (if it is still held)."""
        self.core.publish_stored(camera, stamp_ns)

    def refresh(self, camera: str) -> None:
        """Publish again on the newest published frame (after objects were removed)."""
        self.core.refresh(camera)

    def publish(self, camera: str, frame: Frame, epoch: int) -> None:
        """Publish every kept object of ``camera`` on ``frame`` (of timeline ``epoch``)."""
        self.core.publish(camera, frame, epoch)

    def _publish_outputs(self, outputs: FrameOutputs) -> None:
        """The core's emit while active (called under its lock): the images only while subscribed."""
        self._tracked_pub.publish(outputs.tracked_objects())
        label_pub, overlay_pub = self._label_pubs[outputs.camera], self._overlay_pubs[outputs.camera]
        if label_pub.get_subscription_count():
            if outputs.undrawable:
                self._node.get_logger().warning(
                    f"objects with ids above {MAX_LABEL_ID} are left out of the 16-bit label image; "
                    "ids restart from 1 only when the node restarts", throttle_duration_sec=10.0)
            label_pub.publish(outputs.label_image())
        if overlay_pub.get_subscription_count():
            overlay_pub.publish(outputs.overlay())
        if outputs.camera in self._markers_pubs and outputs.located is not None:
            self._publish_3d(outputs)

    def _publish_3d(self, outputs: FrameOutputs) -> None:
        """Markers (DELETE, once, for objects shown before that have no 3-D now: removed, reset,
        lost or without depth) and the objects' point cloud, with the frame's stamp."""
        markers, points = self._outputs_3d.messages(outputs.camera, outputs.objects_3d(), outputs.frame.stamp_ns,
                                                    outputs.frame.frame_id)
        self._markers_pubs[outputs.camera].publish(markers)
        self._points_pubs[outputs.camera].publish(points)

    def diagnostics(self) -> list[DiagnosticStatus]:
        statuses = []
        skipped = self._host.stats().tracking_skipped_by
        for name, cam in self._cameras.items():
            objects = self._store.objects(name)
            lost = sum(o.lost for o in objects)
            window = cam.feed.window.stats()
            rate = self._scheduler.rate(name) if self._scheduler is not None else None
            achieved = f"{rate.achieved_hz:.1f}" if rate is not None else "0.0"
            since_jump = self._clock() - cam.timeline_changed_at if cam.timeline_changed_at is not None else None
            jumped = since_jump is not None and since_jump < TIMELINE_NOTICE_S
            if cam.last_error:
                message = f"last step failed: {cam.last_error}"
            elif self._rate_hz <= 0:
                message = "tracking off"
            else:
                message = f"{len(objects)} objects ({lost} lost), {achieved} of {self._rate_hz:g} Hz"
            if jumped:
                message += f"; camera stamps jumped back {since_jump:.0f} s ago, tracking restarted on the new timeline"
            level = DiagnosticStatus.WARN if cam.last_error or jumped else DiagnosticStatus.OK
            statuses.append(DiagnosticStatus(
                level=level, name=f"{self._node.get_fully_qualified_name()}: tracking {name}", message=message,
                values=[KeyValue(key="objects", value=str(len(objects))), KeyValue(key="lost", value=str(lost)),
                        KeyValue(key="steps", value=str(cam.steps)),
                        KeyValue(key="caught_up_frames", value=str(cam.caught_up)),
                        KeyValue(key="step_seconds", value=f"{cam.step_seconds:.3f}"),
                        KeyValue(key="failures", value=str(cam.failures)),
                        KeyValue(key="rate_asked_hz", value=f"{self._rate_hz:g}"),
                        KeyValue(key="rate_achieved_hz", value=achieved),
                        KeyValue(key="skipped_model_busy", value=str(skipped.get(name, 0))),
                        KeyValue(key="timeline_resets", value=str(window.stamp_resets)),
                        KeyValue(key="stamp_outliers", value=str(window.stamp_outliers))]))
        return statuses
