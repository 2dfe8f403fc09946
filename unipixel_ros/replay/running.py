"""The replay itself: recorded messages through the node's components, in log order, on one thread.

What runs is the node's own code, driven as the node drives it but synchronously:

* every camera message goes to the camera's :class:`~unipixel_ros.ros.ingest.CameraFeed`
  (stamp checks, conversion, :class:`~unipixel_ros.frames.FrameWindow`), whose arrival clock
  is the message's recorded log time, so stamp leaps are judged as they were when recorded;
  depth images and their CameraInfo too (``--depth``), through the feed's ``on_depth`` and
  ``on_depth_info``;
* a request runs when every message logged before its time has been taken in: a query
  through :class:`~unipixel_ros.ros.query_server.QueryAnswerer` (frame selection, prompt to
  frame matching, the pipeline, the response's messages), a click through
  :func:`~unipixel_ros.ros.clicks.segment_click` (pairs of clicks in ``clicks.mode = box``);
  ``query.max_frame_age_s`` compares against the log time;
* after each new frame the kept objects are tracked onto it
  (:class:`~unipixel_ros.ros.tracking.TrackingCore`): on every frame, where the live node
  steps at ``tracking.rate_hz`` (0 still turns tracking off), once every message logged at
  the same time as the frame (its depth, CameraInfo) has been taken in; objects a request
  left behind catch up through every held frame since (the node's ``tracking.catch_up_frames``,
  spaced at ``tracking.rate_hz`` live);
* on cameras with depth, the node's :class:`~unipixel_ros.ros.objects3d_output.Locator`
  gives query answers and tracked objects their ``Object3D`` and the markers and point
  cloud are written as well; a replay has no tf2, so 3-D stays in each camera's optical
  frame (``depth.target_frame`` is not applied; the summary says so);
* whatever the node would publish for a frame is written to the output bag at the log
  time of the message that caused it, with the node's stamps and frame_ids.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from unipixel_ros.frames import NS_PER_S
from unipixel_ros.memory import MemoryBankError
from unipixel_ros.msg import VisualPrompt
from unipixel_ros.object_store import ObjectStore
from unipixel_ros.prompts import PromptError
from unipixel_ros.replay.config import ReplayConfig
from unipixel_ros.replay.errors import ReplayError
from unipixel_ros.replay.evaluation import Score, best_match, mean_scores, score
from unipixel_ros.replay.reading import CAMERA_INFO, COMPRESSED, IMAGE, Record, Recording
from unipixel_ros.replay.script import Request, Script
from unipixel_ros.replay.writing import OutputBag
from unipixel_ros.ros.clicks import BoxCorners, ClickError, click_description, segment_click
from unipixel_ros.ros.conversions import ConverterUnavailable, UnsupportedEncoding, make_converter
from unipixel_ros.ros.ingest import CameraFeed, stamp_ns
from unipixel_ros.ros.messages import mask_from_msg, time_msg
from unipixel_ros.ros.model_host import BusyError, ModelHost, ModelUnavailableError, PipelineLoader, load_pipeline
from unipixel_ros.ros.objects3d_output import Locator, Outputs3D, markers_topic, points_topic
from unipixel_ros.ros.query_server import QueryAnswerer
from unipixel_ros.ros.tracking import TRACKED_OBJECTS_TOPIC, FrameOutputs, TrackingCore, label_image_topic, overlay_topic
from unipixel_ros.srv import Query

LOG = logging.getLogger("unipixel_ros.replay")
_MSG_CLASSES = {IMAGE: Image, COMPRESSED: CompressedImage, CAMERA_INFO: CameraInfo}

# What is written for each frame published for: (outputs, node topic name resolver) -> (topic, message).
OutputBuilder = Callable[[FrameOutputs, Callable[[str], str]], Iterable[tuple[str, Any]]]


def node_outputs(outputs: FrameOutputs, topic: Callable[[str], str]) -> list[tuple[str, Any]]:
    """The node's tracked outputs of one frame, under its topic names (label image and overlay
    always drawn, as for a subscribed viewer)."""
    camera = outputs.camera
    return [(topic(TRACKED_OBJECTS_TOPIC), outputs.tracked_objects()),
            (topic(label_image_topic(camera)), outputs.label_image()),
            (topic(overlay_topic(camera)), outputs.overlay())]


def node_outputs_3d() -> OutputBuilder:
    """A builder of the node's markers and point cloud (cameras with depth); a new one for each
    replay, since it remembers whose markers are shown (a gone object gets DELETE once)."""
    shown = Outputs3D()

    def build(outputs: FrameOutputs, topic: Callable[[str], str]) -> list[tuple[str, Any]]:
        if outputs.located is None:
            return []
        camera, frame = outputs.camera, outputs.frame
        markers, points = shown.messages(camera, outputs.objects_3d(), frame.stamp_ns, frame.frame_id)
        return [(topic(markers_topic(camera)), markers), (topic(points_topic(camera)), points)]
    return build


# The extension point for per-frame outputs: each makes one replay's builder.
FRAME_OUTPUTS: tuple[Callable[[], OutputBuilder], ...] = (lambda: node_outputs, node_outputs_3d)


@dataclass(frozen=True)
class CameraInput:
    """One camera of the replay: its recorded image topic and type, optional CameraInfo, depth
    image and depth CameraInfo topics."""

    name: str
    topic: str
    msgtype: str
    info_topic: str = ""
    depth_topic: str = ""
    depth_info_topic: str = ""


@dataclass
class _Tracked:
    """A kept object a request created, followed for the evaluation."""

    request: int
    truth: int | None
    since_ns: int                        # newest frame scored (first: the one it was segmented on)
    scores: list[Score] = field(default_factory=list)
    frames: int = 0


class Replay:
    """One replay of a recording (build, then :meth:`run`)."""

    def __init__(self, config: ReplayConfig, cameras: dict[str, CameraInput], script: Script, out: OutputBag,
                 loader: PipelineLoader = load_pipeline,
                 builders: tuple[Callable[[], OutputBuilder], ...] = FRAME_OUTPUTS) -> None:
        self._config = config
        self._cameras = cameras
        self._script = script
        self._out = out
        self._builders = [make() for make in builders]
        self._now_ns = 0
        node, perception = config.node, config.perception
        try:
            converter, _ = make_converter(node.converter_backend)
        except ConverterUnavailable as exc:
            raise ReplayError(f"conversion.backend: {exc}") from exc
        arrival = lambda: self._now_ns / NS_PER_S  # noqa: E731 - the recorded log time is "now"
        self.feeds = {c.name: CameraFeed(c, node.window, converter, LOG, arrival_clock=arrival) for c in node.cameras}
        self.host = ModelHost(perception.model, perception.busy_policy, perception.max_queued, LOG, loader)
        self.store = ObjectStore(self.feeds, perception.max_objects, perception.max_frames_per_object,
                                 timelines={name: feed.window for name, feed in self.feeds.items()})
        self.locator = Locator(None, self.feeds, node.depth)
        if node.depth.target_frame and self.locator.enabled:
            LOG.warning(f"depth.target_frame '{node.depth.target_frame}' is not applied: a replay has no tf2, "
                        "3-D stays in each camera's optical frame")
        self.tracking = TrackingCore(self.feeds, self.store, self.host, LOG, clock=arrival, locator=self.locator,
                                     catch_up=replace(perception.catch_up, rate_hz=0.0))   # every frame, as here
        self.tracking.emit = self._write_outputs
        self._track = perception.tracking_rate_hz > 0
        self.answerer = QueryAnswerer(self.feeds, self.store, self.host, perception.query,
                                      on_remembered=self.tracking.publish_stored, now_ns=lambda: self._now_ns,
                                      logger=LOG, topic_of=lambda feed: cameras[feed.name].topic,
                                      locator=self.locator)
        self.answerer.active = True
        self._corners = BoxCorners(perception.clicks.box_timeout_s) if perception.clicks.mode == "box" else None
        self._by_topic = {c.topic: c for c in cameras.values()}
        self._info_topics = {c.info_topic: c for c in cameras.values() if c.info_topic}
        self._depth_topics = {c.depth_topic: c for c in cameras.values() if c.depth_topic}
        self._depth_info_topics = {c.depth_info_topic: c for c in cameras.values() if c.depth_info_topic}
        self._due: list[str] = []                                # cameras with a frame to track onto
        self._truth_topic = script.ground_truth_topic
        self._truth: dict[int, np.ndarray] = {}                  # stamp -> label image
        self._pending: dict[int, list[tuple[_Tracked, np.ndarray]]] = {}   # stamp -> masks awaiting truth
        self._followed: dict[int, _Tracked] = {}                 # object id -> evaluation
        self.results: list[dict[str, Any]] = []
        self.frames = 0
        self.track_seconds = 0.0

    # -- the run ---------------------------------------------------------------------------

    def load_model(self) -> float:
        """Load the model (as the node does at configure); its load time [s]."""
        began = time.perf_counter()
        self.host.start_loading()
        if not self.host.wait_ready():
            raise ReplayError(f"model.id '{self.host.settings.model_id}' failed to load: "
                              f"{self.host.stats().load_error}")
        return time.perf_counter() - began

    def topics(self) -> list[str]:
        """The recorded topics the replay reads (and copies into the output bag)."""
        topics = [c.topic for c in self._cameras.values()] + list(self._info_topics)
        topics += list(self._depth_topics) + list(self._depth_info_topics)
        return list(dict.fromkeys(topics + ([self._truth_topic] if self._truth_topic else [])))

    def run(self, recording: Recording, requests: list[tuple[int, Request]], start_ns: int, end_ns: int,
            progress: Callable[[int], None] = lambda _: None) -> None:
        """Replay [start_ns, end_ns] with the requests (log time, request), sorted by time."""
        pending = sorted(requests, key=lambda r: (r[0], r[1].index))
        for record in recording.messages(self.topics(), start_ns, end_ns):
            if record.log_ns > self._now_ns:       # all that was logged at the last instant is in
                self._track_due()
            while pending and pending[0][0] < record.log_ns:
                self._run_request(*pending.pop(0))
            self._take(record)
            progress(record.log_ns)
        self._track_due()
        for at_ns, request in pending:
            self._run_request(at_ns, request)
        self._pending.clear()                      # masks of frames without ground truth: not scored

    def _take(self, record: Record) -> None:
        self._now_ns = record.log_ns
        self._out.write_raw(record.topic, record.msgtype, record.log_ns, record.data)
        camera = self._by_topic.get(record.topic)
        if camera is not None:
            msg = deserialize_message(record.data, _MSG_CLASSES[record.msgtype])
            if self.feeds[camera.name].on_image(msg) == UnsupportedEncoding.reason:
                raise ReplayError(f"--camera {camera.name}: {record.topic}: "
                                  f"{self.feeds[camera.name].counters().last_drop.partition(': ')[2]}")
            self.frames += 1
            if self._track and camera.name not in self._due:   # a step without a new frame does nothing
                self._due.append(camera.name)
        for topics, take in ((self._info_topics, lambda feed, msg: feed.on_camera_info(msg)),
                             (self._depth_info_topics, lambda feed, msg: feed.on_depth_info(msg))):
            if record.topic in topics:
                take(self.feeds[topics[record.topic].name], deserialize_message(record.data, CameraInfo))
        if record.topic in self._depth_topics:
            self.feeds[self._depth_topics[record.topic].name].on_depth(deserialize_message(record.data, Image))
        if record.topic == self._truth_topic:
            self._take_truth(deserialize_message(record.data, Image))

    def _track_due(self) -> None:
        """Track the kept objects onto the cameras' new frames (their depth logged with them is in)."""
        due, self._due = self._due, []
        for camera in due:
            began = time.perf_counter()
            try:
                self.tracking.step(camera)
            except Exception as exc:
                raise ReplayError(f"tracking on camera '{camera}' failed at bag time "
                                  f"{self._now_ns} ns: {type(exc).__name__}: {exc}") from exc
            self.track_seconds += time.perf_counter() - began

    # -- outputs ---------------------------------------------------------------------------

    def _node_topic(self, name: str) -> str:
        return self._config.parameters.resolve_topic_name(name)

    def _write_outputs(self, outputs: FrameOutputs) -> None:
        for builder in self._builders:
            for topic, msg in builder(outputs, self._node_topic):
                self._out.write(topic, self._now_ns, msg)
        for obj, mask in outputs.masks:
            followed = self._followed.get(obj.object_id)
            if followed is not None and outputs.frame.stamp_ns > followed.since_ns:
                followed.since_ns = outputs.frame.stamp_ns    # each frame once (a click publishes it again)
                followed.frames += 1
                self._score_later(followed, outputs.frame.stamp_ns, mask)

    # -- requests --------------------------------------------------------------------------

    def _run_request(self, at_ns: int, request: Request) -> None:
        self._track_due()
        self._now_ns = max(self._now_ns, at_ns)
        began = time.perf_counter()
        entry: dict[str, Any] = {"index": request.index, "kind": request.kind, "camera": request.camera,
                                 "at_ns": at_ns}
        if request.kind == "query":
            entry.update(self._query(request))
        else:
            entry.update(self._click(request))
        entry["seconds"] = time.perf_counter() - began
        self.results.append(entry)

    def _query(self, request: Request) -> dict[str, Any]:
        msg = Query.Request(camera=request.camera, text=request.text, window_seconds=request.window_seconds,
                            max_frames=request.max_frames, remember=request.remember,
                            prompts=[_prompt_msg(p) for p in request.prompts])
        outcome = self.answerer.answer(msg)
        objects = []
        for i, obj in enumerate(outcome.objects):
            masks = [mask_from_msg(m) for m in obj.masks]
            stamps = [stamp_ns(s) for s in obj.stamps]
            truth = self._truth_for(request, i, masks[-1], stamps[-1])
            scores = [score(m, self._truth[s] == truth) for m, s in zip(masks, stamps)
                      if truth is not None and s in self._truth]
            objects.append({"id": obj.id, "label": obj.label, "score": obj.score, "lost": obj.lost,
                            "pixels_newest": int(masks[-1].sum()), "truth": truth, **mean_scores(scores),
                            "mask_sha1": [hashlib.sha1(bytes(m.data)).hexdigest() for m in obj.masks]})
            if obj.id:
                self._followed[obj.id] = _Tracked(request.index, truth, stamps[-1])
        return {"success": outcome.success, "message": outcome.message, "text": request.text,
                "answer": outcome.answer, "objects": objects, "frame_stamps": outcome.frame_stamps,
                "timings": outcome.timings}

    def _click(self, request: Request) -> dict[str, Any]:
        x, y = request.click
        where: tuple[float, ...] = (x, y)
        if self._corners is not None:            # clicks.mode = box: two clicks make one box
            box = self._corners.click(request.camera, x, y, self._now_ns / NS_PER_S)
            if box is None:
                return {"success": True, "message": "first box corner (clicks.mode = box)", "objects": []}
            where = box
        try:
            kept = segment_click(self.feeds[request.camera], self.store, self.host, request.camera, where)
        except (PromptError, ClickError, BusyError, ModelUnavailableError, MemoryBankError) as exc:
            return {"success": False, "message": f"click {click_description(where)} ignored: {exc}", "objects": []}
        mask = self.store.get(kept.object_id).mask_at(kept.stamp_ns)
        truth = self._truth_for(request, 0, mask, kept.stamp_ns)
        scores = [score(mask, self._truth[kept.stamp_ns] == truth)] \
            if truth is not None and kept.stamp_ns in self._truth else []
        self._followed[kept.object_id] = _Tracked(request.index, truth, kept.stamp_ns)
        self.tracking.publish_stored(request.camera, kept.stamp_ns)
        return {"success": True, "message": "", "frame_stamps": [kept.stamp_ns],
                "objects": [{"id": kept.object_id, "label": "click", "score": kept.score, "lost": False,
                             "pixels_newest": kept.pixels, "truth": truth, **mean_scores(scores)}]}

    # -- evaluation ------------------------------------------------------------------------

    def _truth_for(self, request: Request, i: int, mask: np.ndarray, stamp: int) -> int | None:
        if request.truth is not None:
            return request.truth[i] if i < len(request.truth) else None
        labels = self._truth.get(stamp)
        return best_match(mask, labels) if labels is not None else None

    def _take_truth(self, msg: Image) -> None:
        if msg.encoding not in ("mono8", "8UC1"):
            raise ReplayError(f"ground_truth_topic {self._truth_topic}: encoding '{msg.encoding}' is not a "
                              "label image (mono8: pixel value k = object k, 0 = background)")
        stamp = stamp_ns(msg.header.stamp)
        labels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :msg.width].copy()
        self._truth[stamp] = labels
        horizon = stamp - int(2 * self._config.node.window.duration_ns)
        for old in [s for s in self._truth if s < horizon]:
            del self._truth[old]
        for followed, mask in self._pending.pop(stamp, []):
            followed.scores.append(score(mask, labels == followed.truth))

    def _score_later(self, followed: _Tracked, stamp: int, mask: np.ndarray) -> None:
        if followed.truth is None:
            return
        if stamp in self._truth:
            followed.scores.append(score(mask, self._truth[stamp] == followed.truth))
        else:                                    # its ground truth is logged after the image
            self._pending.setdefault(stamp, []).append((followed, mask.copy()))

    def camera_counters(self) -> dict[str, dict[str, Any]]:
        """Per camera: frames received, stored, decimated and dropped (by reason), as the node counts them."""
        out = {}
        for name, feed in self.feeds.items():
            c = feed.counters()
            out[name] = {"received": c.received, "stored": c.stored, "decimated": c.decimated,
                         "held_stamp_jump": c.held_stamp_jump, "dropped": dict(c.dropped)}
        return out

    def depth_summary(self) -> dict[str, dict[str, str]]:
        """Per camera with depth: the node's ``camera <name> depth`` status (images received,
        stored and dropped, frames without 3-D by reason), and where the 3-D is expressed."""
        out = {}
        for name, feed in self.feeds.items():
            if feed.config.depth_topic:
                status = feed.depth_status(self._config.parameters.node_name, True)
                out[name] = {"message": status.message, **{kv.key: kv.value for kv in status.values},
                             "frame": "each camera's optical frame (a replay has no tf2)"}
        return out

    def tracked_summary(self) -> dict[int, dict[str, Any]]:
        """Per followed object id: the request that created it and its tracked frames' scores."""
        return {object_id: {"request": t.request, "truth": t.truth, "tracked_frames": t.frames,
                            **mean_scores(t.scores)} for object_id, t in self._followed.items()}


def _prompt_msg(spec: Any) -> VisualPrompt:
    msg = VisualPrompt(object_index=spec.object_index, stamp=time_msg(spec.stamp_ns))
    if spec.type == "point":
        msg.type, (msg.x0, msg.y0) = VisualPrompt.POINT, spec.coordinates
    elif spec.type == "box":
        msg.type, (msg.x0, msg.y0, msg.x1, msg.y1) = VisualPrompt.BOX, spec.coordinates
    else:
        msg.type, msg.memory_id = VisualPrompt.MEMORY, spec.memory_id
    return msg
