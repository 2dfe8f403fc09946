"""The ``~/query`` service and action: text plus visual prompts about one camera's recent frames.

A request picks its frames from the camera's window: those stamped within
``window_seconds`` of the newest frame, at most the newest ``max_frames`` of them
(zero in the request = the ``query.*`` parameter). Time is measured in the camera's
own stamps, so a bag played without a synchronised clock behaves like a live camera;
``query.max_frame_age_s`` (node clock minus the newest stamp) refuses to answer from a
camera that stopped. Each visual prompt names the frame it was drawn on by stamp; it is
matched to the nearest selected frame within ``query.prompt_stamp_tolerance_s`` (a zero
stamp means the newest frame).

A request asks for at most the camera window (``window_seconds`` up to
``window.duration_s``, ``max_frames`` up to ``window.max_frames``) and is bounded by
``query.max_prompts`` and ``query.max_prompt_pixels``, both checked on the messages
before a mask is decoded, and by ``query.max_text_tokens``, which the pipeline checks
with the model's tokenizer before any model work.

Every bad request gets ``success = false`` and a message naming the problem, and the
node keeps serving. The action streams feedback (stage, tokens generated, answer so
far) and can be canceled while it waits for the model or while the model runs. Both
exist from configure to cleanup; while the node is inactive they say so.
"""
from __future__ import annotations

import bisect
import math
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from unipixel_ros.frames import NS_PER_S, Frame, FrameDecodeError, FrameWindow, WindowLimits
from unipixel_ros.memory import MemoryBankError
from unipixel_ros.msg import ObjectMasks
from unipixel_ros.msg import VisualPrompt as VisualPromptMsg
from unipixel_ros.object_store import ObjectStore
from unipixel_ros.prompts import DEFAULT_LIMITS, PromptError, RequestLimits, VisualPrompt, validate_request
from unipixel_ros.results import ProgressCallback, QueryCancelled, QueryResult, SegmentedObject
from unipixel_ros.ros.ingest import CameraFeed, stamp_ns
from unipixel_ros.ros.messages import object_masks_msg, prompt_from_msg, time_msg, timing_msgs
from unipixel_ros.ros.model_host import BusyError, ModelHost, ModelUnavailableError
from unipixel_ros.ros.objects3d_output import Located, Locator, object3d_msg
from unipixel_ros.ros.qos import REQUEST_QOS
from unipixel_ros.action import Query as QueryAction
from unipixel_ros.srv import Query as QueryService

QUERY_NAME = "~/query"          # the service and the action share it


class RequestError(ValueError):
    """A request the node cannot serve as asked; the message goes back to the client."""


@dataclass(frozen=True)
class QuerySettings:
    """The ``query.*`` parameters."""

    window_seconds: float           # default window length [s]
    max_frames: int                 # default frame count
    prompt_tolerance_s: float       # prompt stamp -> frame matching tolerance [s]
    max_frame_age_s: float          # 0 = answer from frames of any age
    limits: RequestLimits = DEFAULT_LIMITS   # query.max_prompts, max_text_tokens, max_prompt_pixels


@dataclass
class QueryOutcome:
    """What a request produced, in the fields the service response and action result share."""

    success: bool
    message: str = ""
    answer: str = ""
    objects: list[ObjectMasks] = field(default_factory=list)
    frame_stamps: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def fill(self, response: Any) -> Any:
        response.success, response.message, response.answer = self.success, self.message, self.answer
        response.objects = self.objects
        response.frame_stamps = [time_msg(s) for s in self.frame_stamps]
        response.timings = timing_msgs(self.timings)
        return response


def _seconds(ns: int) -> str:
    return f"{ns / NS_PER_S:.3f} s"


def select_frames(window: FrameWindow, seconds: float, max_frames: int, now_ns: int | None = None,
                  max_age_s: float = 0.0) -> tuple[Frame, ...]:
    """The newest ``max_frames`` frames stamped within ``seconds`` of the newest frame, oldest
    first, all of the newest frame's size (a camera that changed resolution mid-window
    contributes only its current size)."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise RequestError(f"window_seconds must be a finite number > 0, got {seconds}")
    if max_frames < 1:
        raise RequestError(f"max_frames must be >= 1, got {max_frames}")
    frames = window.last_seconds(seconds)
    if not frames:
        raise RequestError("the camera has no frames yet")
    newest = frames[-1]
    if max_age_s > 0 and now_ns is not None and now_ns - newest.stamp_ns > max_age_s * NS_PER_S:
        raise RequestError(
            f"empty window: the newest frame is {(now_ns - newest.stamp_ns) / NS_PER_S:.1f} s old, "
            f"older than query.max_frame_age_s = {max_age_s:g} s (has the camera stopped?)")
    same_size = [f for f in frames if f.shape == newest.shape]
    return tuple(same_size[-max_frames:])


def decoded_frames(frames: Sequence[Frame]) -> tuple[tuple[Frame, ...], list[np.ndarray]]:
    """The frames whose pixels decode, and their images. A compressed frame that does not
    decode is left out: it has left its window and is counted in the camera's drops."""
    kept, images = [], []
    for frame in frames:
        try:
            images.append(frame.image)
        except FrameDecodeError:
            continue
        kept.append(frame)
    return tuple(kept), images


def match_frame(stamps: Sequence[int], stamp: int, tolerance_ns: int) -> int | None:
    """Index of the stamp nearest to ``stamp`` within ``tolerance_ns`` (older wins a tie), else None."""
    i = bisect.bisect_left(stamps, stamp)
    candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps) and abs(stamps[j] - stamp) <= tolerance_ns]
    return min(candidates, key=lambda j: (abs(stamps[j] - stamp), j)) if candidates else None


def window_request(request: Any, settings: QuerySettings, limits: WindowLimits) -> tuple[float, int]:
    """The request's window length [s] and frame count, zeros meaning the ``query.*`` defaults.

    A request may ask for at most what the camera window holds; a default beyond that is
    cut to it (the window holds no more).
    """
    seconds, count = request.window_seconds, request.max_frames
    if not (math.isfinite(seconds) and seconds >= 0):
        raise RequestError(f"window_seconds must be >= 0 (0 = default), got {seconds}")
    if seconds > limits.duration_s:
        raise RequestError(f"window_seconds must be at most window.duration_s = {limits.duration_s:g} s (the camera "
                           f"window holds no more), got {seconds:g}")
    if count > limits.max_frames:
        raise RequestError(f"max_frames must be at most window.max_frames = {limits.max_frames} (the camera window "
                           f"holds no more frames), got {count}")
    return (seconds or min(settings.window_seconds, limits.duration_s)), (count or settings.max_frames)


def check_prompt_messages(msgs: Sequence[VisualPromptMsg], limits: RequestLimits) -> None:
    """Size limits on the messages themselves, before any mask image is decoded."""
    limits.check_prompt_count(len(msgs))
    limits.check_prompt_pixels(sum(int(m.mask.width) * int(m.mask.height) for m in msgs
                                   if m.type == VisualPromptMsg.MASK))


def _prompt_stamp(msg: VisualPromptMsg) -> int:
    if msg.stamp.sec < 0 or msg.stamp.nanosec >= NS_PER_S:
        raise RequestError(f"prompt for [{msg.object_index}]: stamp ({msg.stamp.sec} s, {msg.stamp.nanosec} ns) "
                           f"is not a time: needs sec >= 0 and nanosec < {NS_PER_S}")
    return stamp_ns(msg.stamp)


def resolve_prompts(msgs: Sequence[VisualPromptMsg], stamps: Sequence[int], tolerance_ns: int,
                    memory_id: Callable[[int], int]) -> list[VisualPrompt]:
    """Prompt messages -> prompts on window frames. ``memory_id`` maps a node object id to the
    camera's bank id (raising when the object is not the camera's)."""
    prompts = []
    for msg in msgs:
        k = msg.object_index
        if msg.type == VisualPromptMsg.MEMORY:
            prompts.append(prompt_from_msg(msg, 0, memory_id(msg.memory_id)))
            continue
        wanted = _prompt_stamp(msg)
        index = len(stamps) - 1 if wanted == 0 else match_frame(stamps, wanted, tolerance_ns)
        if index is None:
            raise RequestError(
                f"prompt for [{k}]: its stamp {_seconds(wanted)} matches none of the {len(stamps)} frames used "
                f"({_seconds(stamps[0])} to {_seconds(stamps[-1])}) within "
                f"query.prompt_stamp_tolerance_s = {tolerance_ns / NS_PER_S:g} s")
        prompts.append(prompt_from_msg(msg, index))
    return prompts


def _score(obj: SegmentedObject) -> float:
    """Mean predicted quality over the frames where the object has a mask."""
    present = obj.masks.reshape(len(obj.masks), -1).any(axis=1)
    return float(np.mean(obj.scores[present])) if present.any() else 0.0


class QueryAnswerer:
    """Serves Query requests from the camera windows, the kept objects and the model, without ROS
    entities: the node's :class:`QueryServer` answers its service and action with it, and an
    offline replay of a recording calls it the same way.

    ``now_ns`` is the clock that ``query.max_frame_age_s`` compares the newest stamp with
    (the node's clock); ``topic_of`` names a feed's subscribed topic in error messages.
    """

    def __init__(self, feeds: Mapping[str, CameraFeed], store: ObjectStore, host: ModelHost,
                 settings: QuerySettings, on_remembered: Callable[[str, int], None], now_ns: Callable[[], int],
                 logger: Any, topic_of: Callable[[CameraFeed], str], locator: Locator | None = None) -> None:
        """``locator`` adds each object's 3-D on the newest frame, on cameras with depth."""
        self._locator = locator
        self._feeds = feeds
        self._store = store
        self._host = host
        self._settings = settings
        self._on_remembered = on_remembered
        self._now_ns = now_ns
        self._logger = logger
        self._topic_of = topic_of
        self.active = False

    # -- the work ---------------------------------------------------------------------------

    def answer(self, request: Any, cancel: threading.Event | None = None,
               progress: ProgressCallback | None = None) -> QueryOutcome:
        """Serve one Query request (service request or action goal: the same fields).

        Raises :class:`QueryCancelled` when ``cancel`` was set; every other failure is a
        QueryOutcome with ``success = False``.
        """
        start = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            camera, epoch, frames, images, prompts = self._prepare(request)
            timings["select_frames"] = time.perf_counter() - start
            stamps = [f.stamp_ns for f in frames]
            if progress is not None and self._host.stats().running:
                progress("waiting_for_model", 0, "")
            waited = time.perf_counter()
            with self._host.exclusive("query", cancel) as pipeline:
                timings["wait_for_model"] = time.perf_counter() - waited
                began = time.perf_counter()
                result = pipeline.query(images, stamps, request.text, prompts, memory=self._store.bank(camera),
                                        progress=progress, cancel=cancel, remember=request.remember,
                                        limits=self._settings.limits)
                timings.update(result.timings)
                timings["pipeline"] = time.perf_counter() - began
            began = time.perf_counter()
            outcome = self._outcome(camera, epoch, frames, result)
            timings["build_response"] = time.perf_counter() - began
        except QueryCancelled:
            raise
        except (RequestError, PromptError, BusyError, ModelUnavailableError, MemoryBankError) as exc:
            return QueryOutcome(False, str(exc), timings=timings)
        except Exception as exc:  # the pipeline failing must not take the service down
            self._logger.error(f"query failed: {traceback.format_exc()}")
            return QueryOutcome(False, f"the query failed inside the model: {type(exc).__name__}: {exc}",
                                timings=timings)
        timings["total"] = time.perf_counter() - start
        outcome.timings = timings
        return outcome

    def _prepare(self, request: Any) -> tuple[str, int, tuple[Frame, ...], list[np.ndarray], list[VisualPrompt]]:
        """The camera, its timeline (window epoch, read before the frames), the frames, their
        images (decoded here, before the model is waited for) and the prompts."""
        if not self.active:
            raise RequestError("the node is inactive; activate it (lifecycle) to answer queries")
        camera = request.camera
        feed = self._feeds.get(camera)
        if feed is None:
            known = ", ".join(self._feeds) or "none"
            raise RequestError(f"unknown camera '{camera}' (configured cameras: {known})")
        s = self._settings
        seconds, max_frames = window_request(request, s, feed.window.limits)
        check_prompt_messages(request.prompts, s.limits)
        if feed.window.latest() is None:
            topic = self._topic_of(feed)
            raise RequestError(f"camera '{camera}' has no frames yet (subscribed to {topic})")
        epoch = feed.window.epoch
        try:
            frames = select_frames(feed.window, seconds, max_frames, self._now_ns(),
                                   s.max_frame_age_s)
        except RequestError as exc:
            raise RequestError(f"camera '{camera}': {exc}") from exc
        selected = len(frames)
        frames, images = decoded_frames(frames)
        if not frames:
            raise RequestError(f"camera '{camera}': none of the {selected} frames selected could be decoded "
                               "(corrupt payloads; the camera's diagnostics count them)")
        stamps = [f.stamp_ns for f in frames]
        prompts = resolve_prompts(request.prompts, stamps, int(round(s.prompt_tolerance_s * NS_PER_S)),
                                  lambda object_id: self._store.bank_id(camera, object_id))
        height, width = frames[-1].height, frames[-1].width
        validate_request(request.text, prompts, len(frames), width, height, s.limits)
        bank = self._store.bank(camera)
        if request.remember and len(bank) >= bank.max_objects:
            raise RequestError(f"cannot remember: the memory of camera '{camera}' is full ({bank.max_objects} "
                               "objects, memory.max_objects); remove objects or reset it first")
        return camera, epoch, frames, images, prompts

    def _outcome(self, camera: str, epoch: int, frames: Sequence[Frame], result: QueryResult) -> QueryOutcome:
        objects = []
        remembered = False
        located: list[Located | None] = [None] * len(result.objects)
        if self._locator is not None and self._feeds[camera].config.depth_topic and result.objects:
            located = self._locator.locate(camera, frames[-1], [o.masks[-1] for o in result.objects])
        for obj, where in zip(result.objects, located):
            if len(obj.masks) != len(frames):
                raise RuntimeError(f"the pipeline returned {len(obj.masks)} masks for {len(frames)} frames")
            object_id = 0
            if obj.memory_id is not None:
                object_id = self._store.adopt(camera, obj.memory_id, epoch)
                remembered = True
            objects.append(object_masks_msg(object_id, obj.label, _score(obj), not bool(obj.masks[-1].any()),
                                            [(f.stamp_ns, f.frame_id, m) for f, m in zip(frames, obj.masks)],
                                            object3d_msg(where, frames[-1].stamp_ns) if where else None))
        if remembered:
            self._on_remembered(camera, frames[-1].stamp_ns)
        return QueryOutcome(success=True, answer=result.answer, objects=objects,
                            frame_stamps=[f.stamp_ns for f in frames])


class QueryServer:
    """Node component serving ``~/query`` as a service and as an action."""

    def __init__(self, node: Node, feeds: Mapping[str, CameraFeed], store: ObjectStore, host: ModelHost,
                 settings: QuerySettings, on_remembered: Callable[[str, int], None],
                 locator: Locator | None = None) -> None:
        self._node = node
        self.answerer = QueryAnswerer(feeds, store, host, settings, on_remembered,
                                      now_ns=lambda: node.get_clock().now().nanoseconds, logger=node.get_logger(),
                                      topic_of=lambda feed: node.resolve_topic_name(feed.config.subscribed_topic),
                                      locator=locator)
        group = ReentrantCallbackGroup()
        # Served from configure to cleanup, so that a request running when the node
        # deactivates still gets its answer ("canceled") and requests to an inactive node
        # are told so instead of finding no server.
        # No request is dropped before it is taken (REQUEST_QOS); once taken, each one runs,
        # waits in the model host's bounded queue or is refused as busy at once, so the
        # executor threads blocked by queries stay within node.EXECUTOR_THREADS' budget.
        self._service = node.create_service(QueryService, QUERY_NAME, self._on_service,
                                            qos_profile=REQUEST_QOS, callback_group=group)
        self._action = ActionServer(node, QueryAction, QUERY_NAME, self._on_goal_execute,
                                    goal_callback=lambda _: GoalResponse.ACCEPT,
                                    cancel_callback=self._on_cancel, callback_group=group,
                                    goal_service_qos_profile=REQUEST_QOS,
                                    result_service_qos_profile=REQUEST_QOS,
                                    cancel_service_qos_profile=REQUEST_QOS)
        self._cancels: dict[bytes, threading.Event] = {}
        self._cancels_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def activate(self) -> None:
        self.answerer.active = True

    def deactivate(self) -> None:
        self.answerer.active = False

    def cleanup(self) -> None:
        self._node.destroy_service(self._service)
        self._action.destroy()

    def diagnostics(self) -> list:
        return []

    def answer(self, request: Any, cancel: threading.Event | None = None,
               progress: ProgressCallback | None = None) -> QueryOutcome:
        """:meth:`QueryAnswerer.answer`."""
        return self.answerer.answer(request, cancel, progress)

    # -- ROS callbacks ----------------------------------------------------------------------

    def _on_service(self, request: QueryService.Request, response: QueryService.Response) -> QueryService.Response:
        try:   # a service cannot be canceled by its client; the event lets a deactivation do it
            return self.answer(request, threading.Event()).fill(response)
        except QueryCancelled as exc:
            return QueryOutcome(False, f"canceled: {exc}").fill(response)

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        with self._cancels_lock:
            event = self._cancels.get(bytes(goal_handle.goal_id.uuid))
        if event is not None:
            event.set()
        return CancelResponse.ACCEPT

    def _on_goal_execute(self, goal_handle: ServerGoalHandle) -> QueryAction.Result:
        key = bytes(goal_handle.goal_id.uuid)
        cancel = threading.Event()
        with self._cancels_lock:
            self._cancels[key] = cancel
        if goal_handle.is_cancel_requested:
            cancel.set()

        def progress(stage: str, tokens: int, partial: str) -> None:
            goal_handle.publish_feedback(QueryAction.Feedback(stage=stage, tokens_generated=tokens,
                                                              partial_answer=partial))
        try:
            outcome = self.answer(goal_handle.request, cancel, progress)
        except QueryCancelled as exc:
            result = QueryOutcome(False, f"canceled: {exc}").fill(QueryAction.Result())
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            return result
        finally:
            with self._cancels_lock:
                self._cancels.pop(key, None)
        if outcome.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return outcome.fill(QueryAction.Result())
