"""End to end through the node with the shipped synthetic weights, over DDS (loopback).

A client streams a synthetic clip to a real node process (the default components and
the real pipeline with the default model, the shipped synthetic UniPixel), asks it to
segment the red circle, and clicks on another shape as rqt_image_view does. The
published masks must cover the shapes' true pixels on the frames whose stamps they
carry.
"""
from __future__ import annotations

import subprocess
import tempfile
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from helpers.perception_client import Client, image_msg, mono_pixels, publish_until, stamp_of, wait_for  # noqa: E402
from helpers.ros_client import interrupt, ros_args, spawn  # noqa: E402
from unipixel_ros.msg import ObjectMasksArray  # noqa: E402
from unipixel_ros.srv import ListObjects, Query  # noqa: E402
from unipixel_ros.synthetic.scenes import Scene, SceneObject, random_scene  # noqa: E402
from unipixel_ros.scoring import mask_iou  # noqa: E402

pytestmark = pytest.mark.ros

NS, CAMERA, FRAME_ID = "/trained", "cam", "cam_optical"
W, H, FRAMES, PERIOD_NS = 320, 240, 6, 100_000_000
# What the default (shipped synthetic) model reaches on this clip, less a margin: text 0.54 mean
# IoU over the 6 frames, click 0.62 (MODEL_CARD.md: on held-out clips text referring is much
# weaker, clicks about as good).
MIN_TEXT_IOU = 0.45
MIN_CLICK_IOU = 0.5
PARAMS = {"cameras": [CAMERA], "model.device": "cpu", "model.dtype": "float32",
          "tracking.rate_hz": 0.0, "query.window_seconds": 10.0, "query.max_frames": 16}


def clip() -> Scene:
    """A red circle, a blue square and a green triangle drifting over a textured background."""
    background = random_scene(3, W, H).background
    objects = (SceneObject("circle", "red", 26.0, (80.0, 90.0), (3.0, 1.0)),
               SceneObject("square", "blue", 24.0, (230.0, 150.0), (-2.0, -1.5)),
               SceneObject("triangle", "green", 26.0, (150.0, 190.0), (1.0, -2.0), angle=0.1))
    return Scene(W, H, objects, background, seed=5)


def log(stderr) -> str:
    stderr.seek(0)
    return stderr.read()


@pytest.fixture(scope="module")
def node():
    with tempfile.TemporaryFile("w+") as stderr:
        proc = spawn(["-m", "unipixel_ros.ros.node", *ros_args(NS, PARAMS)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            yield proc, stderr
        finally:
            interrupt(proc, timeout=20)


@pytest.fixture(scope="module")
def streamed(node):
    proc, stderr = node
    scene = clip()
    frames = [scene.render(t) for t in range(FRAMES)]
    client = Client("trained_node_test_client")
    try:
        diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
        publisher = client.publisher(Image, f"{NS}/{CAMERA}/image_raw", timeout=60)
        time.sleep(0.3)
        start = time.time_ns()
        stamps = [start + i * PERIOD_NS for i in range(FRAMES)]

        def send() -> None:
            for frame, stamp in zip(frames, stamps):
                publisher.publish(image_msg(frame.image, stamp, FRAME_ID))
                time.sleep(0.05)

        def frames_held() -> int:
            for array in reversed(client.snapshot(diagnostics)):
                for status in array.status:
                    if status.name == f"{NS}/unipixel: camera {CAMERA}":
                        return next((int(kv.value) for kv in status.values if kv.key == "frames_held"), 0)
            return 0

        # Best effort: frames sent before the node matched the publisher are lost. Sent again,
        # the same stamps fill the gaps (the node drops the ones it holds already).
        publish_until(send, lambda: proc.poll() is not None or frames_held() == FRAMES, 60,
                      f"the node to hold the {FRAMES} frames of the clip", every=1.5)

        replies = []

        def holds_all() -> bool:
            replies.append(client.call(Query, f"{NS}/unipixel/query",
                                       Query.Request(camera=CAMERA, text="What is shown?", max_frames=1), timeout=60))
            reply = replies[-1]
            return reply.success and bool(reply.frame_stamps) and stamp_of(reply.frame_stamps[-1]) == stamps[-1]

        wait_for(lambda: proc.poll() is not None or holds_all(), 120,
                 f"the node to load the model and hold the clip; last reply {replies[-1:]}, log:\n{log(stderr)}")
        assert proc.poll() is None, log(stderr)
        yield client, frames, stamps
    finally:
        client.close()


def test_segment_the_red_circle_returns_its_masks_on_every_stamped_frame(streamed):
    client, frames, stamps = streamed
    reply = client.call(Query, f"{NS}/unipixel/query",
                        Query.Request(camera=CAMERA, text="Please segment the red circle.", max_frames=FRAMES),
                        timeout=120)
    assert reply.success, reply.message
    assert [stamp_of(s) for s in reply.frame_stamps] == stamps
    assert reply.objects, f"no object segmented; answer {reply.answer!r}"
    obj = reply.objects[0]
    assert [stamp_of(s) for s in obj.stamps] == stamps
    ious = []
    for mask, frame, stamp in zip(obj.masks, frames, stamps):
        assert (stamp_of(mask.header.stamp), mask.header.frame_id) == (stamp, FRAME_ID)
        ious.append(mask_iou(mono_pixels(mask) > 0, frame.masks[0]))
    assert np.mean(ious) >= MIN_TEXT_IOU, ious


def test_a_click_on_another_shape_is_segmented_on_the_newest_frame(streamed):
    client, frames, stamps = streamed
    tracked = client.subscribe(ObjectMasksArray, f"{NS}/unipixel/tracked_objects")
    newest = frames[-1]
    x, y = (float(v) for v in newest.centers[1])          # the blue square
    client.publisher(Point, f"{NS}/{CAMERA}/image_raw_mouse_left").publish(Point(x=x, y=y))
    listed = lambda: client.call(ListObjects, f"{NS}/unipixel/list_objects",  # noqa: E731
                                 ListObjects.Request(camera=CAMERA)).objects
    kept = wait_for(lambda: [o for o in listed() if o.label == "click"], 120, "the clicked object to be kept")
    published = wait_for(lambda: next((m for m in client.snapshot(tracked)
                                       if any(o.id == kept[-1].id for o in m.objects)), None), 60,
                         "the clicked object on tracked_objects")
    assert stamp_of(published.header.stamp) == stamps[-1] and published.header.frame_id == FRAME_ID
    (obj,) = [o for o in published.objects if o.id == kept[-1].id]
    iou = mask_iou(mono_pixels(obj.masks[0]) > 0, newest.masks[1])
    assert iou >= MIN_CLICK_IOU, iou
