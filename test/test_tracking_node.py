"""Kept objects are tracked on new frames and published (node process, DDS on loopback, pipeline doubled).

A client streams frames at 10 Hz, asks a query that remembers its objects, and reads
``~/tracked_objects``, ``~/cam/label_image`` and ``~/cam/overlay``: ids stay the same
across frames, label image pixels are the object ids, objects out of view are listed as
lost, and the memory services list, remove and reset objects.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from helpers.fake_pipeline import disc  # noqa: E402
from helpers.perception_client import Client, NodeProcess, image_msg, mono_pixels, stamp_of, wait_for  # noqa: E402
from unipixel_ros.msg import ObjectMasksArray, VisualPrompt  # noqa: E402
from unipixel_ros.srv import ListObjects, Query, RemoveObjects, ResetMemory  # noqa: E402

pytestmark = pytest.mark.ros

NS = "/ttest"
SRV = f"{NS}/unipixel"
W, H, FRAME_ID = 32, 24, "cam_optical"
MAX_FRAMES_PER_OBJECT, MAX_OBJECTS = 5, 3
POINTS = [(8.0, 8.0), (22.0, 14.0)]      # disjoint discs
PARAMS = {
    "cameras": ["cam"],
    "tracking.rate_hz": 10.0,
    "memory.max_frames_per_object": MAX_FRAMES_PER_OBJECT,
    "memory.max_objects": MAX_OBJECTS,
    "query.window_seconds": 1.0,
    "model.id": "test-model",
}


class Streamer:
    """Publishes bright random frames at 10 Hz (black ones while ``black`` is set)."""

    def __init__(self, client: Client) -> None:
        self.pub = client.publisher(Image, f"{NS}/cam/image_raw")
        self.black = False
        self.frames: dict[int, np.ndarray] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(0.1):
            rgb = np.zeros((H, W, 3), np.uint8) if self.black else \
                np.random.default_rng(i).integers(40, 230, (H, W, 3), dtype=np.uint8)
            stamp = time.time_ns()
            self.frames[stamp] = rgb
            self.pub.publish(image_msg(rgb, stamp, FRAME_ID))
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def setup():
    node = NodeProcess(NS, PARAMS)
    client = Client("tracking_test_client")
    streamer = None
    try:
        node.wait_ready()
        tracked = client.subscribe(ObjectMasksArray, f"{SRV}/tracked_objects")
        labels = client.subscribe(Image, f"{SRV}/cam/label_image")
        overlays = client.subscribe(Image, f"{SRV}/cam/overlay")
        streamer = Streamer(client)
        wait_for(lambda: client.snapshot(tracked), 30, "tracked_objects to start")
        yield client, node, streamer, tracked, labels, overlays
    finally:
        if streamer:
            streamer.stop()
        client.close()
        node.stop()


def point(k: int, x: float, y: float) -> VisualPrompt:
    return VisualPrompt(type=VisualPrompt.POINT, object_index=k, x0=float(x), y0=float(y))


def remember(client: Client, points, text: str) -> Query.Response:
    client.call(ResetMemory, f"{SRV}/reset_memory", ResetMemory.Request())
    resp = client.call(Query, f"{SRV}/query", Query.Request(
        camera="cam", text=text, prompts=[point(k, x, y) for k, (x, y) in enumerate(points)], remember=True))
    assert resp.success, resp.message
    return resp


def messages_after(client: Client, received: list, stamp_ns: int, count: int, what: str) -> list:
    return wait_for(lambda: (m := [x for x in client.snapshot(received) if stamp_of(x.header.stamp) > stamp_ns])
                    and len(m) >= count and m, 20, what)


def test_remembered_objects_keep_their_ids_on_every_tracked_frame(setup) -> None:
    client, node, _, tracked, labels, overlays = setup
    resp = remember(client, POINTS, "[0] and [1]")
    ids = [o.id for o in resp.objects]
    assert len(set(ids)) == 2 and min(ids) >= 1
    listed = client.call(ListObjects, f"{SRV}/list_objects", ListObjects.Request()).objects
    assert [(o.id, o.camera, o.label, o.lost) for o in listed] == [(ids[0], "cam", "[0]", False),
                                                                   (ids[1], "cam", "[1]", False)]
    query_stamp = stamp_of(resp.frame_stamps[-1])
    msgs = messages_after(client, tracked, query_stamp, 4, "four tracked frames after the query")

    stamps = [stamp_of(m.header.stamp) for m in msgs]
    assert stamps == sorted(set(stamps))
    expected = [disc(H, W, x, y) for x, y in POINTS]
    for msg in msgs:
        assert (msg.camera, msg.header.frame_id) == ("cam", FRAME_ID)
        assert [o.id for o in msg.objects] == ids
        for obj, mask in zip(msg.objects, expected):
            assert not obj.lost and len(obj.masks) == 1
            assert (stamp_of(obj.masks[0].header.stamp), obj.masks[0].header.frame_id) == (
                stamp_of(msg.header.stamp), FRAME_ID)
            assert np.array_equal(mono_pixels(obj.masks[0]) > 0, mask)
    # the query's own newest frame is published again once the objects are kept
    at_query = [m for m in client.snapshot(tracked) if stamp_of(m.header.stamp) == query_stamp]
    assert [o.id for o in at_query[-1].objects] == ids
    track_calls = [c for c in node.calls("track") if c["stamp"] in stamps]
    assert [c["stamp"] for c in track_calls] == stamps[: len(track_calls)] and len(track_calls) >= 3

    label = wait_for(lambda: next((m for m in client.snapshot(labels) if stamp_of(m.header.stamp) in stamps), None),
                     10, "a label image of a tracked frame")
    assert (label.encoding, label.width, label.height, label.header.frame_id) == ("mono16", W, H, FRAME_ID)
    pixels = mono_pixels(label)
    want = np.zeros((H, W), np.uint16)
    for object_id, mask in zip(ids, expected):
        want[mask] = object_id
    assert np.array_equal(pixels, want)

    picture = wait_for(lambda: next((m for m in client.snapshot(overlays) if stamp_of(m.header.stamp) in stamps),
                                    None), 10, "an overlay of a tracked frame")
    assert (picture.encoding, picture.width, picture.height, picture.step) == ("bgr8", W, H, 3 * W)


def test_a_follow_up_question_about_a_kept_object_uses_its_masks(setup) -> None:
    client, node, _, _, _, _ = setup
    kept = remember(client, POINTS[:1], "[0]").objects[0].id
    memory = VisualPrompt(type=VisualPrompt.MEMORY, object_index=0, memory_id=kept)
    resp = client.call(Query, f"{SRV}/query", Query.Request(camera="cam", text="Where is [0] going?",
                                                            prompts=[memory]))
    assert resp.success, resp.message
    assert np.array_equal(mono_pixels(resp.objects[0].masks[-1]) > 0, disc(H, W, *POINTS[0]))
    (call,) = [c for c in node.calls("query") if c["text"] == "Where is [0] going?"]
    assert call["prompts"][0]["type"] == "MemoryPrompt" and call["prompts"][0]["memory_id"] >= 1


def test_objects_out_of_view_are_reported_lost_and_found_again(setup) -> None:
    client, _, streamer, tracked, _, _ = setup
    (kept,) = [o.id for o in remember(client, POINTS[:1], "[0]").objects]
    streamer.black = True
    try:
        lost = wait_for(lambda: next((m for m in client.snapshot(tracked) if m.objects
                                      and m.objects[0].id == kept and m.objects[0].lost), None),
                        20, "the object reported lost")
    finally:
        streamer.black = False
    (obj,) = lost.objects
    assert not mono_pixels(obj.masks[0]).any()
    assert (obj.boxes[0].width, obj.boxes[0].height) == (0, 0)
    listed = client.call(ListObjects, f"{SRV}/list_objects", ListObjects.Request(camera="cam")).objects
    assert [o.id for o in listed] == [kept]
    after = stamp_of(lost.header.stamp)
    wait_for(lambda: any(stamp_of(m.header.stamp) > after and not m.objects[0].lost
                         for m in client.snapshot(tracked)), 20, "the object found again")
    info = client.call(ListObjects, f"{SRV}/list_objects", ListObjects.Request()).objects[0]
    assert stamp_of(info.last_seen) > after and stamp_of(info.first_seen) < after


def test_masks_kept_per_object_are_bounded(setup) -> None:
    client, _, _, tracked, _, _ = setup
    resp = remember(client, POINTS[:1], "[0]")
    messages_after(client, tracked, stamp_of(resp.frame_stamps[-1]), MAX_FRAMES_PER_OBJECT + 3,
                   "more tracked frames than the per-object bound")
    (info,) = client.call(ListObjects, f"{SRV}/list_objects", ListObjects.Request()).objects
    assert info.frames_stored == MAX_FRAMES_PER_OBJECT


def test_memory_services_remove_and_reset(setup) -> None:
    client, _, _, tracked, _, _ = setup
    first, second = (o.id for o in remember(client, POINTS, "[0] and [1]").objects)
    removed = client.call(RemoveObjects, f"{SRV}/remove_objects", RemoveObjects.Request(ids=[first, 999]))
    assert not removed.success and list(removed.removed) == [first]
    assert removed.message == "no object with id 999 in memory"
    since = time.time_ns()
    messages_after(client, tracked, since, 2, "tracked frames after the removal")
    assert all([o.id for o in m.objects] == [second] for m in client.snapshot(tracked)
               if stamp_of(m.header.stamp) > since)

    bad = client.call(ResetMemory, f"{SRV}/reset_memory", ResetMemory.Request(camera="nope"))
    assert not bad.success and "unknown camera 'nope'" in bad.message
    reset = client.call(ResetMemory, f"{SRV}/reset_memory", ResetMemory.Request(camera="cam"))
    assert reset.success and reset.removed == 1
    assert client.call(ListObjects, f"{SRV}/list_objects", ListObjects.Request()).objects == []
    listing = client.call(ListObjects, f"{SRV}/list_objects", ListObjects.Request(camera="nope"))
    assert not listing.success and "unknown camera 'nope'" in listing.message


def test_remembering_into_a_full_memory_is_refused_with_a_message(setup) -> None:
    client, _, _, _, _, _ = setup
    remember(client, POINTS, "[0] and [1]")
    third = client.call(Query, f"{SRV}/query", Query.Request(camera="cam", text="[0]", prompts=[point(0, 4, 4)],
                                                             remember=True))
    assert third.success
    full = client.call(Query, f"{SRV}/query", Query.Request(camera="cam", text="[0]", prompts=[point(0, 4, 4)],
                                                            remember=True))
    assert not full.success
    assert f"memory of camera 'cam' is full ({MAX_OBJECTS} objects" in full.message
