"""Click to segment on a real node process over DDS (loopback), pipeline doubled.

Clicks arrive as rqt_image_view sends them (geometry_msgs/Point on
``<image_topic>_mouse_left``, also on the node's own overlay) and as RViz's Publish
Point sends them (PointStamped on /clicked_point, projected with CameraInfo). The test
checks the plumbing: the prompt reaching the pipeline has the clicked pixel and the
newest frame, and the object it creates is kept and published on that frame. Clicks
that cannot be used are reported with a warning naming why.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Point, PointStamped  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from helpers.fake_pipeline import disc, frame_digest  # noqa: E402
from helpers.perception_client import (Client, NodeProcess, camera_info_msg, image_msg, mono_pixels,  # noqa: E402
                                       publish_until, stamp_of, wait_for)
from unipixel_ros.msg import ObjectMasksArray  # noqa: E402
from unipixel_ros.srv import ListObjects, Query  # noqa: E402

pytestmark = pytest.mark.ros

NS, NS_BOX = "/ctest", "/ctest_box"
W, H = 32, 24
K = [20.0, 0.0, 15.5, 0.0, 20.0, 11.5, 0.0, 0.0, 1.0]
PARAMS = {"cameras": ["cam", "nocal"], "cameras.cam.camera_info_topic": "cam/camera_info",
          "tracking.rate_hz": 0.0, "model.id": "test-model"}


def frame_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 230, (H, W, 3), dtype=np.uint8)


def send_frames(client: Client, ns: str, camera: str, seeds: list[int], info=None) -> dict[str, object]:
    """Publish a few frames (each after its CameraInfo, as drivers do, when ``info`` is a
    publisher) until the node holds the newest; returns its stamp and image.

    Camera topics are best effort: frames sent before the node matched the publisher are
    lost, so the frames are sent again, with the same stamps, while the node lacks the newest."""
    pub = client.publisher(Image, f"{ns}/{camera}/image_raw")
    time.sleep(0.3)
    stamps: list[int] = []

    def send() -> None:
        for i, seed in enumerate(seeds):
            if len(stamps) <= i:
                stamps.append(time.time_ns())
            if info is not None:
                info.publish(camera_info_msg(W, H, K, f"{camera}_optical"))
                time.sleep(0.05)
            pub.publish(image_msg(frame_image(seed), stamps[i], f"{camera}_optical"))
            time.sleep(0.05)
    publish_until(send, lambda: newest_held(client, ns, camera) == stamps[-1], 20,
                  f"the node in {ns} to hold the newest frame of {camera}")
    return {"stamp": stamps[-1], "image": frame_image(seeds[-1])}


@pytest.fixture(scope="module")
def setup():
    nodes = [NodeProcess(NS, PARAMS), NodeProcess(NS_BOX, {**PARAMS, "clicks.mode": "box"})]
    client = Client("clicks_test_client")
    try:
        for node in nodes:
            node.wait_ready()
        tracked = client.subscribe(ObjectMasksArray, f"{NS}/unipixel/tracked_objects")
        info = client.publisher(CameraInfo, f"{NS}/cam/camera_info")
        newest = {"cam": send_frames(client, NS, "cam", [1, 2, 3], info),
                  "nocal": send_frames(client, NS, "nocal", [4, 5]),
                  "box": send_frames(client, NS_BOX, "cam", [6, 7])}
        yield client, nodes, newest, tracked
    finally:
        client.close()
        for node in nodes:
            node.stop()


def newest_held(client: Client, ns: str, camera: str) -> int | None:
    reply = client.call(Query, f"{ns}/unipixel/query", Query.Request(camera=camera, text="newest?", max_frames=1))
    return stamp_of(reply.frame_stamps[-1]) if reply.success else None


def click_and_wait(client: Client, node: NodeProcess, msg_type, topic: str, msg) -> dict:
    before = len(node.calls("segment_prompt"))
    client.publisher(msg_type, topic).publish(msg)
    calls = wait_for(lambda: node.calls("segment_prompt")[before:], 20, f"a segmentation after a click on {topic}")
    assert len(calls) == 1
    return calls[0]


def point_stamped(frame_id: str, x: float, y: float, z: float) -> PointStamped:
    msg = PointStamped(point=Point(x=x, y=y, z=z))
    msg.header.frame_id = frame_id
    return msg


def objects(client: Client, camera: str = "") -> list:
    return client.call(ListObjects, f"{NS}/unipixel/list_objects", ListObjects.Request(camera=camera)).objects


def test_rqt_click_segments_the_newest_frame_and_keeps_the_object(setup) -> None:
    client, (node, _), newest, tracked = setup
    call = click_and_wait(client, node, Point, f"{NS}/cam/image_raw_mouse_left", Point(x=12.0, y=9.0))
    assert call["stamps"] == [newest["cam"]["stamp"]]
    assert call["digests"] == [frame_digest(newest["cam"]["image"])]
    assert call["prompt"] == {"type": "PointPrompt", "object_index": 0, "frame_index": 0, "x": 12.0, "y": 9.0,
                              "positive": True}
    kept = wait_for(lambda: [o for o in objects(client, "cam") if o.label == "click"], 10, "the kept object")
    assert stamp_of(kept[-1].first_seen) == newest["cam"]["stamp"]
    first = wait_for(lambda: next((m for m in client.snapshot(tracked)
                                   if any(o.id == kept[-1].id for o in m.objects)), None), 10, "the object published")
    assert stamp_of(first.header.stamp) == newest["cam"]["stamp"] and first.header.frame_id == "cam_optical"
    (obj,) = [o for o in first.objects if o.id == kept[-1].id]
    assert np.array_equal(mono_pixels(obj.masks[0]) > 0, disc(H, W, 12.0, 9.0))


def test_clicks_on_the_overlay_work_the_same(setup) -> None:
    client, (node, _), newest, _ = setup
    call = click_and_wait(client, node, Point, f"{NS}/unipixel/cam/overlay_mouse_left", Point(x=3.0, y=20.0))
    assert (call["prompt"]["x"], call["prompt"]["y"], call["stamps"]) == (3.0, 20.0, [newest["cam"]["stamp"]])


def test_pixel_clicks_need_no_camera_info(setup) -> None:
    client, (node, _), newest, _ = setup
    call = click_and_wait(client, node, Point, f"{NS}/nocal/image_raw_mouse_left", Point(x=5.0, y=6.0))
    assert call["digests"] == [frame_digest(newest["nocal"]["image"])]
    wait_for(lambda: objects(client, "nocal"), 10, "an object on camera nocal")


def test_rviz_point_in_the_optical_frame_is_projected_with_camera_info(setup) -> None:
    client, (node, _), newest, _ = setup
    # u = fx * x / z + cx = 20 * 0.45 / 2 + 15.5 = 20; v = 20 * -0.15 / 2 + 11.5 = 10
    known = {o.id for o in objects(client)}
    call = click_and_wait(client, node, PointStamped, "/clicked_point", point_stamped("cam_optical", 0.45, -0.15, 2.0))
    assert call["prompt"]["x"] == pytest.approx(20.0, abs=1e-9)
    assert call["prompt"]["y"] == pytest.approx(10.0, abs=1e-9)
    assert call["stamps"] == [newest["cam"]["stamp"]]
    (new,) = wait_for(lambda: [o for o in objects(client) if o.id not in known], 10, "the kept object")
    assert (new.camera, new.label, stamp_of(new.first_seen)) == ("cam", "click", newest["cam"]["stamp"])


@pytest.mark.parametrize("topic, msg, warning", [
    ("/clicked_point", point_stamped("nocal_optical", 0.1, 0.1, 1.0),
     "camera 'nocal': no CameraInfo received (set cameras.nocal.camera_info_topic)"),
    ("/clicked_point", point_stamped("map", 0.1, 0.1, 1.0),
     "camera 'cam': the point is in frame 'map' but the images are in 'cam_optical', and tf2_ros is not available"),
    ("/clicked_point", point_stamped("cam_optical", 0.1, 0.1, -1.0),
     "camera 'cam': the point is not in front of the camera (z = -1.000 m in the optical frame)"),
    ("/clicked_point", point_stamped("cam_optical", 5.0, 0.0, 1.0),
     "camera 'cam': projects to pixel (115.5, 11.5), outside the 32x24 image"),
    ("/ctest/cam/image_raw_mouse_left", Point(x=40.0, y=5.0), "point (40.0, 5.0) is outside the 32x24 image"),
])
def test_unusable_clicks_are_reported_and_the_node_keeps_serving(setup, topic, msg, warning) -> None:
    client, (node, _), _, _ = setup
    before = len(node.calls("segment_prompt"))
    client.publisher(type(msg), topic).publish(msg)
    wait_for(lambda: warning in node.log(), 20, f"the warning '{warning}'")
    assert len(node.calls("segment_prompt")) == before
    assert objects(client) is not None


def test_box_mode_takes_two_clicks_as_opposite_corners(setup) -> None:
    client, (_, box_node), newest, _ = setup
    topic = f"{NS_BOX}/cam/image_raw_mouse_left"
    client.publisher(Point, topic).publish(Point(x=20.0, y=15.0))
    wait_for(lambda: "box corner (20.0, 15.0) on camera 'cam'" in box_node.log(), 20, "the first corner")
    assert box_node.calls("segment_prompt") == []
    call = click_and_wait(client, box_node, Point, topic, Point(x=5.0, y=4.0))
    assert call["prompt"] == {"type": "BoxPrompt", "object_index": 0, "frame_index": 0,
                              "x0": 5.0, "y0": 4.0, "x1": 20.0, "y1": 15.0}
    assert call["stamps"] == [newest["box"]["stamp"]]
