"""The offline demo: a synthetic camera, the UniPixel node, a question, a click, tracking.

    python -m unipixel_ros.demo [model:=synthetic|tiny|PATH|HUB_ID] [device:=auto] [dtype:=auto]
                                [decoder_backend:=torch] [out:=out/demo] [track_seconds:=4]
                                [seed:=3] [timeout:=600] [domain:=]

Runs everything on this machine (DDS on loopback only, a private ROS domain: ``domain:=`` picks
it, by default one drawn from the process id):

1. starts the synthetic camera (seeded shapes moving over textures, with CameraInfo and a
   registered 16-bit depth image: each shape flat at its own depth) and the node, which
   subscribes to that depth, as separate processes, exactly as ``ros2 run`` would;
2. asks the ``~/query`` action "Please segment the <colour> <shape>." about the last
   two seconds, printing the feedback, keeps the segmented objects in memory and waits
   until the node tracks them on new frames (it first steps them through the frames that
   came while the query ran);
3. clicks (as rqt_image_view does) on another shape, at the point deepest inside it over
   the next few frames (the node segments its newest frame when the click arrives),
   which the node segments with SAM 2 alone and keeps (clicking again, on the next shape, while the
   node finds nothing there, which happens with a model that was not trained);
4. records the tracked objects, label images and overlays for a few seconds, from when the
   node publishes them again, then asks "What colour is [0]?" about the clicked object the node
   keeps (a MEMORY prompt: a follow-up question about a tracked object);
5. scores itself: the synthetic camera's frames are known, so every mask the node sent
   (the query's, the click's and the tracked ones) is compared with the true mask of the
   shape it was asked for on the same frame (found from the frame's pixels), and the IoUs
   are printed and written to ``summary.json`` under ``scores``, with the follow-up answer
   against the clicked shape's true colour (``scores.follow_up``); the 3-D of the query's
   objects (from the reply's ``Object3D``) and of the tracked query and clicked objects
   (centroid, extent, point count, frame_id) is printed and written under ``objects3d``,
   and scored under ``scores_3d``: the centroid's z against the true depth of the shape
   asked for, and the centroid against that shape's true visible pixels back-projected
   at its depth through the camera's intrinsics (errors in metres);
6. writes ``answer.txt``, ``summary.json``, the query's mask PNGs and the tracked masks,
   label images (16-bit) and overlays as PNG to the output folder, then stops the
   processes and exits 0.

Without ``model:=`` the node's default, ``synthetic``, is used: a small UniPixel shipped
with the package and trained on these synthetic scenes only (its model card,
``unipixel_ros/data/unipixel-synthetic/MODEL_CARD.md``, gives its held-out scores). It
runs anywhere in seconds. ``model:=tiny`` is the same architecture with random weights
(noise masks); ``model:=PolyU-ChenLab/UniPixel-3B`` uses the published model.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from unipixel_ros.mask_points import border_distance
from unipixel_ros.synthetic import answer_matches

NAMESPACE = "/demo"
CAMERA = "camera"
FRAME_ID = "camera_optical"
WIDTH, HEIGHT, RATE_HZ, NUM_OBJECTS = 320, 240, 5.0, 3
HORIZONTAL_FOV_DEG = 60.0              # the synthetic camera's default, given to it explicitly
QUERY_WINDOW_S = 2.0
# Asked about the clicked object once it has been tracked, through a MEMORY prompt (a follow-up
# question about a kept object, as a user asks one after clicking).
FOLLOW_UP = "What colour is [0]?"
# ...over the newest frames only: the synthetic model's language stages saw clips of 1-4 frames,
# and over the 11 frames of the question's window its answers go astray (model card, "Limits").
FOLLOW_UP_FRAMES = 4
MAX_CLICKS = 8
OPTIONS = {"model": "", "device": "auto", "dtype": "auto", "decoder_backend": "torch", "out": "out/demo",
           "track_seconds": "4", "seed": "3", "timeout": "600", "domain": ""}
OUTPUT_PATTERNS = ("*.png", "answer.txt", "summary.json", "*.log")


class DemoError(RuntimeError):
    """A step of the demo that did not work; the message says which and why."""


def parse_options(argv: list[str]) -> dict[str, str]:
    """``key:=value`` arguments (as ``ros2 launch`` takes them) over the defaults."""
    options = dict(OPTIONS)
    for arg in argv:
        key, sep, value = arg.partition(":=")
        if not sep or key not in OPTIONS:
            raise SystemExit(f"unknown argument '{arg}'; use key:=value with key one of {', '.join(OPTIONS)}")
        options[key] = value
    return options


_START = time.monotonic()


def say(message: str) -> None:
    print(f"[demo {time.monotonic() - _START:6.1f}s] {message}", flush=True)


class Process:
    """A child process whose stderr goes to a log file; warnings and errors are echoed."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.notes: list[str] = []
        self._log = log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, *argv], stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._log.write(line)
            self._log.flush()
            if "WARN" in line or "ERROR" in line or "Error" in line:
                self.notes.append(line.strip())
                print(f"[{self.name}] {line.rstrip()}", flush=True)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise DemoError(f"{self.name} exited with status {self.proc.returncode}; see {self._log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        self._log.close()


@dataclass
class Recorder:
    """What the demo's client node receives, keyed by stamp (ns)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    images: dict[int, np.ndarray] = field(default_factory=dict)
    tracked: list[Any] = field(default_factory=list)
    overlays: dict[int, Any] = field(default_factory=dict)
    labels: dict[int, Any] = field(default_factory=dict)
    closed: bool = False             # set when tracking ends: what is scored and written stays put

    def on_tracked(self, msg: Any) -> None:
        with self.lock:
            if not self.closed:
                self.tracked.append(msg)

    def keep(self, store: dict, limit: int = 200) -> Callable[[Any], None]:
        def on_image(msg: Any) -> None:
            with self.lock:
                if self.closed:
                    return
                store[stamp_ns(msg.header.stamp)] = msg
                while len(store) > limit:
                    store.pop(next(iter(store)))
        return on_image


def stamp_ns(stamp: Any) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def pixels(msg: Any) -> np.ndarray:
    """rgb8 / bgr8 / mono8 / mono16 Image -> array (H x W x 3 or H x W)."""
    dtype, channels = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 1),
                       "mono16": (np.dtype("<u2"), 1)}[msg.encoding]
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    flat = rows.view(dtype)[:, : msg.width * channels]
    return flat.reshape(msg.height, msg.width, channels) if channels == 3 else flat


def write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise DemoError(f"could not write {path}")


# A click reaches the node a frame or two after the frame it was aimed at (the node segments
# its newest frame), so the demo clicks where the shape will still be over this many frames.
CLICK_LEAD_FRAMES = 3


def click_targets(stream: Any, image: np.ndarray, hint: int, first: str) -> list[tuple[int, str, float, float]]:
    """(frame index, object name, x, y) for each visible shape on the frame showing ``image``.

    The point is the one deepest inside the shape on that frame and on the next
    ``CLICK_LEAD_FRAMES`` (the frames the node may segment by the time the click arrives),
    so a moving shape, or one passing behind another, is still under it. Other shapes than
    ``first`` come first, those with a deeper point before the others.
    """
    index = stream.index_of(image, range(max(0, hint - 40), hint + 40)) or stream.index_of(image, range(0, 400))
    if index is None:
        raise DemoError("the camera image is none of the synthetic stream's frames")
    scene, _ = stream.scene_at(index)
    episode = stream.episode_frames
    frames = [stream.frame(index + lead) for lead in range(CLICK_LEAD_FRAMES + 1)
              if not episode or (index + lead) // episode == index // episode]    # the same scene
    targets = []
    for k, obj in enumerate(scene.objects):
        if not frames[0].masks[k].any():
            continue
        depth = np.min([border_distance(f.masks[k]) for f in frames], axis=0)
        if depth.max() <= 0:    # no pixel stays inside: aim at the frame itself
            depth = border_distance(frames[0].masks[k])
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        targets.append((obj.name == first, -float(depth.max()), (index, obj.name, float(x), float(y))))
    if not targets:
        raise DemoError(f"no shape is visible on frame {index}")
    return [t for *_, t in sorted(targets, key=lambda t: t[:2])]


# How far past the last frame found the ground truth looks for the next one (60 s at 5 Hz).
_SEARCH_FRAMES = 300


class GroundTruth:
    """The true masks of the frames the demo received, by stamp: each frame is found in the
    synthetic stream by its pixels (the camera sends rgb8, so they match exactly)."""

    def __init__(self, stream: Any, rec: Recorder) -> None:
        self._stream, self._rec = stream, rec
        self._indices: dict[int, int | None] = {}      # stamp -> stream frame index

    def mask(self, stamp: int, name: str) -> np.ndarray | None:
        """The shape ``name``'s true mask on the frame stamped ``stamp``; None if unknown."""
        index = self._index(stamp)
        if index is None:
            return None
        scene, _ = self._stream.scene_at(index)
        names = [o.name for o in scene.objects]
        return self._stream.frame(index).masks[names.index(name)] if name in names else None

    def depth(self, stamp: int, name: str) -> float | None:
        """The shape ``name``'s true (flat) depth [m] on the frame stamped ``stamp``; None if unknown."""
        from unipixel_ros.synthetic.scenes import object_depth_m

        index = self._index(stamp)
        if index is None:
            return None
        names = [o.name for o in self._stream.scene_at(index)[0].objects]
        return object_depth_m(names.index(name), len(names)) if name in names else None

    def _index(self, stamp: int) -> int | None:
        if stamp not in self._indices:
            with self._rec.lock:
                msg = self._rec.images.get(stamp)
            self._indices[stamp] = None if msg is None else self._find(pixels(msg))
        return self._indices[stamp]

    def _find(self, image: np.ndarray) -> int | None:
        # Frames are looked up in stamp order, so the next one is a few frames past the last.
        hint = max((i for i in self._indices.values() if i is not None), default=0)
        index = self._stream.index_of(image, range(hint, hint + _SEARCH_FRAMES))
        return index if index is not None else self._stream.index_of(image, range(hint))


def score_track(truth: GroundTruth, name: str, masks: list[tuple[int, np.ndarray]]) -> dict[str, Any]:
    """IoU of an object's masks ((stamp, mask) pairs) with shape ``name``'s true masks."""
    from unipixel_ros.scoring import mask_iou

    ious = [mask_iou(mask, expected) for stamp, mask in masks
            if (expected := truth.mask(stamp, name)) is not None]
    if not ious:
        return {"object": name, "frames": 0}
    return {"object": name, "frames": len(ious), "mean_iou": round(float(np.mean(ious)), 3),
            "min_iou": round(float(np.min(ious)), 3), "frames_iou_at_least_0.5": int(sum(i >= 0.5 for i in ious))}


def true_centroid(mask: np.ndarray, depth_m: float, k: list[float]) -> np.ndarray:
    """The centroid of a flat shape's visible pixels at ``depth_m``, back-projected through the
    row-major intrinsics ``k``: what a perfect mask over exact depth would locate."""
    v, u = np.nonzero(mask)
    return np.array([(u.mean() - k[2]) * depth_m / k[0], (v.mean() - k[5]) * depth_m / k[4], depth_m])


def describe_3d(o3d: Any) -> dict[str, Any]:
    """An ``Object3D`` message as plain values (centroid and extent in metres)."""
    out: dict[str, Any] = {"stamp_ns": stamp_ns(o3d.header.stamp), "frame_id": o3d.header.frame_id,
                           "point_count": int(o3d.point_count), "status": o3d.status}
    if o3d.point_count:
        out["centroid_m"] = [round(float(c), 4) for c in (o3d.centroid.x, o3d.centroid.y, o3d.centroid.z)]
        out["extent_m"] = [round(float(c), 4) for c in (o3d.extent.x, o3d.extent.y, o3d.extent.z)]
    return out


def score_3d(truth: GroundTruth, name: str, located: list[Any], k: list[float]) -> dict[str, Any]:
    """3-D error of ``Object3D`` messages of shape ``name`` against the synthetic truth: the
    centroid's z against the shape's true depth, and the whole centroid against
    :func:`true_centroid` of its true visible mask on the same frame [m]."""
    z_errors, centroid_errors, depths = [], [], []
    for o3d in located:
        stamp = stamp_ns(o3d.header.stamp)
        depth, mask = truth.depth(stamp, name), truth.mask(stamp, name)
        if not o3d.point_count or depth is None or mask is None or not mask.any():
            continue
        centroid = np.array([o3d.centroid.x, o3d.centroid.y, o3d.centroid.z])
        depths.append(depth)
        z_errors.append(float(centroid[2] - depth))
        centroid_errors.append(float(np.linalg.norm(centroid - true_centroid(mask, depth, k))))
    out: dict[str, Any] = {"object": name, "frames": len(z_errors), "without_3d": len(located) - len(z_errors)}
    if z_errors:
        out.update(true_depth_m=round(depths[-1], 4),
                   mean_z_error_m=round(float(np.mean(z_errors)), 4),
                   max_abs_z_error_m=round(float(np.max(np.abs(z_errors))), 4),
                   mean_centroid_error_m=round(float(np.mean(centroid_errors)), 4))
    return out


def best_match(truth: GroundTruth, names: list[str], stamp: int, mask: np.ndarray) -> str | None:
    """The shape whose true mask overlaps ``mask`` most on that frame (what the mask is on)."""
    from unipixel_ros.scoring import mask_iou

    overlaps = {n: mask_iou(mask, m) for n in names if (m := truth.mask(stamp, n)) is not None}
    return max(overlaps, key=overlaps.get) if overlaps and max(overlaps.values()) > 0 else None


def run(options: dict[str, str]) -> None:
    # Imported here: the ROS environment variables must be set before rclpy loads.
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import Point
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from unipixel_ros.action import Query
    from unipixel_ros.msg import ObjectMasksArray, VisualPrompt
    from unipixel_ros.rendering import OverlayObject, overlay
    from unipixel_ros.ros.spinner import stop_spinning
    from unipixel_ros.srv import ListObjects
    from unipixel_ros.synthetic.scenes import SyntheticStream

    out = Path(options["out"])
    out.mkdir(parents=True, exist_ok=True)
    for pattern in OUTPUT_PATTERNS:
        for old in out.glob(pattern):
            old.unlink()
    seed, timeout = int(options["seed"]), float(options["timeout"])
    stream = SyntheticStream(seed, WIDTH, HEIGHT, NUM_OBJECTS)
    scene, _ = stream.scene_at(0)

    say(f"ROS domain {os.environ['ROS_DOMAIN_ID']}, discovery on localhost only; output in {out}/")
    camera = Process("camera", ["-m", "unipixel_ros.ros.synthetic_camera", "--ros-args",
                                "-r", f"__ns:={NAMESPACE}/{CAMERA}", "-p", f"seed:={seed}",
                                "-p", f"width:={WIDTH}", "-p", f"height:={HEIGHT}", "-p", f"rate:={RATE_HZ}",
                                "-p", f"num_objects:={NUM_OBJECTS}", "-p", f"frame_id:={FRAME_ID}",
                                "-p", f"horizontal_fov_deg:={HORIZONTAL_FOV_DEG}", "-p", "depth_encoding:=16UC1"],
                     out / "camera.log")
    node_params = {"cameras": f"[{CAMERA}]", f"cameras.{CAMERA}.camera_info_topic": f"{CAMERA}/camera_info",
                   f"cameras.{CAMERA}.depth_topic": f"{CAMERA}/depth/image_raw",
                   f"cameras.{CAMERA}.depth_camera_info_topic": f"{CAMERA}/depth/camera_info",
                   "model.device": options["device"], "model.dtype": options["dtype"],
                   "model.decoder_backend": options["decoder_backend"], "tracking.rate_hz": RATE_HZ,
                   "query.window_seconds": QUERY_WINDOW_S, "diagnostics.period_s": 0.5}
    if options["model"]:
        node_params["model.id"] = options["model"]
    node = Process("node", ["-m", "unipixel_ros.ros.node", "--ros-args", "-r", f"__ns:={NAMESPACE}",
                            *(a for k, v in node_params.items() for a in ("-p", f"{k}:={v}"))],
                   out / "node.log")
    say(f"started the synthetic camera (seed {seed}: {', '.join(o.name for o in scene.objects)}) "
        f"and the node (model {options['model'] or 'default'}, device {options['device']})")

    context = rclpy.Context()
    rclpy.init(args=["unipixel_demo"], context=context)
    client = rclpy.create_node("unipixel_demo", context=context)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    rec = Recorder()
    srv = f"{NAMESPACE}/unipixel"
    qos = QoSProfile(depth=50)
    client.create_subscription(Image, f"{NAMESPACE}/{CAMERA}/image_raw", rec.keep(rec.images), qos)
    client.create_subscription(ObjectMasksArray, f"{srv}/tracked_objects", rec.on_tracked, qos)
    client.create_subscription(Image, f"{srv}/{CAMERA}/overlay", rec.keep(rec.overlays), qos)
    client.create_subscription(Image, f"{srv}/{CAMERA}/label_image", rec.keep(rec.labels), qos)
    diagnostics: dict[str, dict[str, str]] = {}      # status name suffix -> values and its message

    def on_diagnostics(msg: Any) -> None:
        for status in msg.status:
            diagnostics[status.name.partition(": ")[2]] = {"message": status.message,
                                                            **{kv.key: kv.value for kv in status.values}}
    client.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos)

    def diagnostic(status: str, key: str) -> int:
        return int(diagnostics.get(status, {}).get(key, 0))

    def wait(predicate: Callable[[], Any], seconds: float, what: str) -> Any:
        deadline = time.monotonic() + seconds
        while not (value := predicate()):
            camera.check_alive()
            node.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {seconds:.0f} s waiting for {what}")
            time.sleep(0.05)
        return value

    try:
        wanted = int(RATE_HZ * QUERY_WINDOW_S)
        wait(lambda: diagnostic(f"camera {CAMERA}", "frames_held") >= wanted, 60, "the node to hold camera frames")
        say(f"the node holds {WIDTH}x{HEIGHT} frames at {RATE_HZ:g} Hz")
        # A question asked while the model loads waits for it, and its frames (the newest when
        # asked) are then as old as the rest of the load: beyond the window's 10 s the node
        # can no longer track the answer's objects through the frames in between.
        def model_loaded() -> bool:
            message = diagnostics.get("model", {}).get("message", "")
            if message.startswith("failed to load"):
                raise DemoError(f"the node's model {message}")
            return message.startswith(("idle", "busy"))
        wait(model_loaded, 600, "the model to load")
        say(f"the model is loaded ({diagnostics['model'].get('load_seconds', '?')} s)")

        # -- the question --------------------------------------------------------------------
        target = scene.objects[0].name
        question = f"Please segment the {target}."
        action = ActionClient(client, Query, f"{srv}/query")
        wait(lambda: action.wait_for_server(timeout_sec=0.5), 60, "the node's query action")
        say(f"asking: \"{question}\" (last {QUERY_WINDOW_S:g} s, keep the objects)")
        last_stage = [""]

        def feedback(msg: Any) -> None:
            fb = msg.feedback
            if fb.stage != last_stage[0]:
                last_stage[0] = fb.stage
                say(f"  stage {fb.stage}" + (f", {fb.tokens_generated} tokens" if fb.tokens_generated else ""))

        def ask(goal: Any, what: str, **kwargs: Any) -> Any:
            """Send a query goal and wait for its result."""
            sent = action.send_goal_async(goal, **kwargs)
            handle = wait(lambda: sent.done() and sent.result(), 60, f"the {what} goal to be accepted")
            future = handle.get_result_async()
            return wait(lambda: future.done() and future.result(), timeout, f"the {what} answer").result

        result = ask(Query.Goal(camera=CAMERA, text=question, window_seconds=QUERY_WINDOW_S, remember=True),
                     "query", feedback_callback=feedback)
        if not result.success:
            raise DemoError(f"the query failed: {result.message}")
        timings = {t.stage: round(t.seconds, 3) for t in result.timings}
        say(f"answer: {result.answer!r} ({len(result.objects)} objects, {timings.get('total', 0):.2f} s)")
        write_query_outputs(out, result, rec, overlay, OverlayObject)
        if result.objects:
            # The query's objects end at its frames, seconds old by now: the node first steps them
            # through the frames that came meanwhile (tracking.catch_up_frames), then tracks them on.
            answered_on = stamp_ns(result.frame_stamps[-1])
            wait(lambda: any(stamp_ns(m.header.stamp) > answered_on and m.objects for m in list(rec.tracked)),
                 60, "the node to track the query's objects on new frames")
            say("the node tracks the query's objects on new frames")

        # -- the click -----------------------------------------------------------------------
        clicks = client.create_publisher(Point, f"{NAMESPACE}/{CAMERA}/image_raw_mouse_left", QoSProfile(depth=10))
        wait(lambda: clicks.get_subscription_count() > 0, 30, "the node's click subscription")
        click = None
        for attempt in range(MAX_CLICKS):        # an untrained model often finds nothing at a click
            with rec.lock:
                image = pixels(rec.images[max(rec.images)])
            targets = click_targets(stream, image, len(rec.images), first=target)
            index, clicked, x, y = targets[attempt % len(targets)]
            seen = (diagnostic("clicks", "created"), diagnostic("clicks", "ignored"))
            clicks.publish(Point(x=x, y=y))
            say(f"clicked ({x:.0f}, {y:.0f}) on the {clicked} (frame {index})")
            wait(lambda: (diagnostic("clicks", "created"), diagnostic("clicks", "ignored")) != seen, 60,
                 "the node to handle the click")
            if diagnostic("clicks", "created") > seen[0]:
                click = {"x": x, "y": y, "object": clicked, "frame_index": index}
                say("the click became a kept object")
                break
        if click is None:
            say("no click made an object (see the node's warnings): there is nothing of the click to track")

        # -- tracking ------------------------------------------------------------------------
        track_seconds = float(options["track_seconds"])
        since = time.time_ns()
        with rec.lock:
            published = len(rec.tracked)
        # A click that waited for the model is caught up with too before the node publishes again.
        wait(lambda: len(rec.tracked) > published, 60, "the node to track the kept objects")
        say(f"tracking for {track_seconds:g} s")
        time.sleep(track_seconds)
        with rec.lock:
            rec.closed = True
        summary = write_tracking_outputs(out, rec, since)
        truth = GroundTruth(stream, rec)
        scores = score_demo(truth, [o.name for o in scene.objects], target, result, click, rec, since)

        # -- a follow-up question about the clicked object -------------------------------------
        kept_clicks = [o for o in list_objects(client, ListObjects, srv, wait) if o.label == "click"]
        if click is not None and kept_clicks:
            kept = max(kept_clicks, key=lambda o: o.id)
            say(f"asking: \"{FOLLOW_UP}\" about the clicked object (memory id {kept.id}, newest "
                f"{FOLLOW_UP_FRAMES} frames)")
            prompt = VisualPrompt(type=VisualPrompt.MEMORY, object_index=0, memory_id=kept.id)
            reply = ask(Query.Goal(camera=CAMERA, text=FOLLOW_UP, prompts=[prompt], window_seconds=QUERY_WINDOW_S,
                                   max_frames=FOLLOW_UP_FRAMES), "follow-up")
            if reply.success:
                colour = next(o.colour for o in scene.objects if o.name == click["object"])
                with rec.lock:
                    last = next(((stamp_ns(m.header.stamp), pixels(o.masks[0]) > 0) for m in reversed(rec.tracked)
                                 for o in m.objects if o.id == kept.id), None)
                on = best_match(truth, [o.name for o in scene.objects], *last) if last else None
                scores["follow_up"] = score_follow_up(reply.answer, click["object"], colour, kept.id, on)
            else:   # e.g. the object left the view: no mask of it on the newest frames
                scores["follow_up"] = {"question": FOLLOW_UP, "memory_id": kept.id, "object": click["object"],
                                       "error": reply.message}
        say_scores(scores)
        from unipixel_ros.ros.synthetic_camera import pinhole_k

        in_3d = demo_3d(truth, target, result, click, rec, since,
                        pinhole_k(WIDTH, HEIGHT, HORIZONTAL_FOV_DEG))
        say_3d(in_3d)
        summary.update(in_3d)
        summary.update(scores=scores, model=options["model"] or "node default", question=question, answer=result.answer,
                       query_objects=[{"id": o.id, "label": o.label, "score": round(o.score, 3)}
                                      for o in result.objects],
                       timings=timings, click=click,
                       memory=[{"id": o.id, "label": o.label, "lost": o.lost, "frames_stored": o.frames_stored}
                               for o in list_objects(client, ListObjects, srv, wait)])
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        notes = [n for n in node.notes if "model" in n]
        (out / "answer.txt").write_text(
            f"question: {question}\nanswer: {result.answer}\nmodel: {summary['model']}\n"
            + "".join(f"note: {n}\n" for n in notes))
        say(f"{len(summary['tracked_frames'])} tracked frames; wrote {len(list(out.glob('*.png')))} PNGs, "
            f"answer.txt and summary.json to {out}/")
    finally:
        stop_spinning(executor, spinner)
        client.destroy_node()
        rclpy.try_shutdown(context=context)
        node.stop()
        camera.stop()


def score_demo(truth: GroundTruth, names: list[str], target: str, result: Any, click: dict | None,
               rec: Recorder, since_ns: int) -> dict[str, Any]:
    """IoU with the truth of the query's masks (on the frames it used), of what each query object
    was then tracked as, and of the clicked object's tracked masks."""
    stamps = [stamp_ns(s) for s in result.frame_stamps]
    with rec.lock:
        tracked = [m for m in rec.tracked if stamp_ns(m.header.stamp) >= since_ns]

    def track_of(keep: Callable[[Any], bool]) -> list[tuple[int, np.ndarray]]:
        return [(stamp_ns(m.header.stamp), pixels(o.masks[0]) > 0) for m in tracked for o in m.objects if keep(o)]

    scores: dict[str, Any] = {"query": [], "click": None}
    for obj in result.objects:
        masks = [pixels(m) > 0 for m in obj.masks]
        entry = {"id": obj.id, "label": obj.label, **score_track(truth, target, list(zip(stamps, masks))),
                 "mask_is_on": best_match(truth, names, stamps[-1], masks[-1])}
        if obj.id:
            entry["tracked"] = score_track(truth, target, track_of(lambda o, i=obj.id: o.id == i))
        scores["query"].append(entry)
    if click is not None:
        query_ids = {o.id for o in result.objects}
        scores["click"] = score_track(truth, click["object"],
                                      track_of(lambda o: o.label == "click" and o.id not in query_ids))
    return scores


def demo_3d(truth: GroundTruth, target: str, result: Any, click: dict | None, rec: Recorder, since_ns: int,
            k: list[float]) -> dict[str, Any]:
    """``objects3d``: the 3-D of each query object in the reply, of its tracked masks (newest) and
    of the clicked object's track (newest); ``scores_3d``: each of them against the truth."""
    with rec.lock:
        tracked = [m for m in rec.tracked if stamp_ns(m.header.stamp) >= since_ns]

    def track_of(keep: Callable[[Any], bool]) -> list[Any]:
        return [o.object3d for m in tracked for o in m.objects if keep(o)]

    objects: dict[str, Any] = {"query": [], "click": None}
    scores: dict[str, Any] = {"query": [], "click": None}
    for obj in result.objects:
        entry = {"id": obj.id, "label": obj.label, "reply": describe_3d(obj.object3d)}
        score = {"id": obj.id, "label": obj.label, "reply": score_3d(truth, target, [obj.object3d], k)}
        if obj.id:
            track = track_of(lambda o, i=obj.id: o.id == i)
            entry["tracked_newest"] = describe_3d(track[-1]) if track else None
            score["tracked"] = score_3d(truth, target, track, k)
        objects["query"].append(entry)
        scores["query"].append(score)
    if click is not None:
        query_ids = {o.id for o in result.objects}
        track = track_of(lambda o: o.label == "click" and o.id not in query_ids)
        objects["click"] = {"object": click["object"], "tracked_newest": describe_3d(track[-1]) if track else None}
        scores["click"] = score_3d(truth, click["object"], track, k)
    return {"objects3d": objects, "scores_3d": scores}


def say_3d(in_3d: dict[str, Any]) -> None:
    def where(d: dict[str, Any] | None) -> str:
        if d is None:
            return "never tracked"
        if not d["point_count"]:
            return f"no 3-D ({d['status'] or 'no depth'})"
        (x, y, z), (ex, ey, ez) = d["centroid_m"], d["extent_m"]
        return (f"centroid ({x:.3f}, {y:.3f}, {z:.3f}) m, extent {ex:.3f} x {ey:.3f} x {ez:.3f} m, "
                f"{d['point_count']} points in '{d['frame_id']}'")

    def error(s: dict[str, Any]) -> str:
        if not s["frames"]:
            return f"no frame with 3-D to score against the {s['object']}"
        return (f"z error vs the true {s['true_depth_m']:.2f} m of the {s['object']}: mean {s['mean_z_error_m']:+.3f},"
                f" max |{s['max_abs_z_error_m']:.3f}| m, centroid error {s['mean_centroid_error_m']:.3f} m over "
                f"{s['frames']} frames")
    objects, scores = in_3d["objects3d"], in_3d["scores_3d"]
    for entry, score in zip(objects["query"], scores["query"]):
        say(f"3-D: query object {entry['id'] or '-'} ({entry['label']}) in the reply: {where(entry['reply'])}; "
            f"{error(score['reply'])}")
        if "tracked" in score:
            say(f"3-D:   tracked afterwards, newest: {where(entry['tracked_newest'])}; {error(score['tracked'])}")
    if objects["click"] is not None:
        say(f"3-D: clicked object tracked, newest: {where(objects['click']['tracked_newest'])}; "
            f"{error(scores['click'])}")


def say_scores(scores: dict[str, Any]) -> None:
    def line(s: dict[str, Any]) -> str:
        if not s.get("frames"):
            return f"no frame to score against the {s['object']}"
        return (f"IoU with the true {s['object']}: mean {s['mean_iou']:.2f}, min {s['min_iou']:.2f}, "
                f">= 0.5 on {s['frames_iou_at_least_0.5']} of {s['frames']} frames")
    for entry in scores["query"]:
        say(f"score: query object {entry['id'] or '-'} ({entry['label']}): {line(entry)}; "
            f"its mask is on the {entry['mask_is_on'] or 'background'}")
        if "tracked" in entry:
            say(f"score:   tracked afterwards: {line(entry['tracked'])}")
    if scores["click"] is not None:
        say(f"score: clicked object tracked: {line(scores['click'])}")
    follow_up = scores.get("follow_up")
    if follow_up is not None and "error" in follow_up:
        say(f"score: \"{follow_up['question']}\" about the clicked {follow_up['object']}: not answered "
            f"({follow_up['error']})")
    elif follow_up is not None:
        say(f"score: \"{follow_up['question']}\" about the clicked {follow_up['object']}: {follow_up['answer']!r} "
            f"({'right' if follow_up['correct'] else 'wrong'}: it is {follow_up['true_colour']}; its tracked mask was "
            f"last on the {follow_up['mask_is_on'] or 'background'})")


def score_follow_up(answer: str, name: str, colour: str, memory_id: int, mask_is_on: str | None) -> dict[str, Any]:
    """The follow-up answer about the clicked object against the colour the scene drew it in, and
    the shape its newest tracked mask lay on (the region the answer was read from)."""
    return {"question": FOLLOW_UP, "memory_id": memory_id, "object": name, "answer": answer,
            "true_colour": colour, "correct": answer_matches(answer, colour), "mask_is_on": mask_is_on}


def list_objects(client: Any, srv_type: Any, srv: str, wait: Callable) -> list:
    service = client.create_client(srv_type, f"{srv}/list_objects")
    try:
        wait(lambda: service.wait_for_service(timeout_sec=0.5), 30, "the list_objects service")
        future = service.call_async(srv_type.Request())
        return wait(lambda: future.done() and future.result(), 30, "the object list").objects
    finally:
        client.destroy_client(service)


def write_query_outputs(out: Path, result: Any, rec: Recorder, draw: Callable, overlay_object: type) -> None:
    """Each query object's mask on every frame used, and the newest frame with them drawn on it."""
    newest_stamp = stamp_ns(result.frame_stamps[-1])
    drawn = []
    for n, obj in enumerate(result.objects):
        name = f"obj{obj.id}" if obj.id else f"answer{n}"
        for i, mask in enumerate(obj.masks):
            write_png(out / f"query_{name}_frame{i:02d}.png", pixels(mask))
        drawn.append(overlay_object(obj.id or n + 1, obj.label, pixels(obj.masks[-1]) > 0))
    with rec.lock:
        frame = rec.images.get(newest_stamp)
    if frame is not None:
        write_png(out / "query_overlay.png", draw(pixels(frame), drawn))


def write_tracking_outputs(out: Path, rec: Recorder, since_ns: int) -> dict[str, Any]:
    """Overlay, label image and per-object masks of every tracked frame since ``since_ns``."""
    with rec.lock:
        tracked = [m for m in rec.tracked if stamp_ns(m.header.stamp) >= since_ns]
        overlays, labels = dict(rec.overlays), dict(rec.labels)
    frames = []
    for k, msg in enumerate(tracked):
        stamp = stamp_ns(msg.header.stamp)
        for obj in msg.objects:
            write_png(out / f"track{k:03d}_obj{obj.id}.png", pixels(obj.masks[0]))
        if stamp in overlays:
            write_png(out / f"track{k:03d}_overlay.png", pixels(overlays[stamp]))
        if stamp in labels:
            write_png(out / f"track{k:03d}_labels.png", pixels(labels[stamp]))
        frames.append({"stamp_ns": stamp, "objects": [
            {"id": o.id, "label": o.label, "lost": o.lost, "pixels": int((pixels(o.masks[0]) > 0).sum())}
            for o in msg.objects]})
    return {"tracked_frames": frames}


def main(argv: list[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    if options["domain"] and not (options["domain"].isdigit() and 0 <= int(options["domain"]) <= 232):
        raise SystemExit(f"domain:= takes a ROS domain id from 0 to 232, got '{options['domain']}'")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = options["domain"] or str(random.Random(os.getpid()).randint(1, 101))
    try:
        run(options)
    except DemoError as exc:
        say(f"FAILED: {exc}")
        return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
