"""Objects in 3-D through a real node process over DDS (loopback), pipeline doubled.

Camera ``rgbd``: rgb8 frames with a registered depth image of the same stamp, flat at
DEPTH_M (the double's masks are discs and boxes, so every 3-D value is known exactly).
Camera ``half``: depth at half the colour resolution with a depth CameraInfo that does not
scale with the colour one, so it gets no 3-D and diagnostics say why.
Camera ``silent``: a depth topic that never publishes; the node serves 2-D and says so.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Point, PointStamped  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from helpers.fake_pipeline import disc  # noqa: E402
from helpers.perception_client import (Client, NodeProcess, camera_info_msg, image_msg, publish_until,  # noqa: E402
                                       stamp_of, wait_for)
from unipixel_ros.msg import ObjectMasksArray, VisualPrompt  # noqa: E402
from unipixel_ros.srv import Query, RemoveObjects, ResetMemory  # noqa: E402

pytestmark = pytest.mark.ros

NS = "/dtest"
NODE = f"{NS}/unipixel"
W, H = 64, 48
F = 50.0
K = [F, 0.0, (W - 1) / 2, 0.0, F, (H - 1) / 2, 0.0, 0.0, 1.0]
DEPTH_M = 1.5
OPTICAL = "rgbd_optical"
PARAMS = {"cameras": ["rgbd", "half", "silent"], "tracking.rate_hz": 20.0, "model.id": "test-model",
          "diagnostics.period_s": 0.2,
          "cameras.rgbd.camera_info_topic": "rgbd/camera_info", "cameras.rgbd.depth_topic": "rgbd/depth",
          "cameras.half.camera_info_topic": "half/camera_info", "cameras.half.depth_topic": "half/depth",
          "cameras.half.depth_camera_info_topic": "half/depth_info",
          # a depth topic nothing ever publishes on
          "cameras.silent.camera_info_topic": "silent/camera_info", "cameras.silent.depth_topic": "silent/depth"}


def depth_msg(depth: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "32FC1",
              cut: int = 0) -> Image:
    pixels = depth.astype("<f4") if encoding == "32FC1" else depth.astype(np.uint8)
    msg = Image(height=depth.shape[0], width=depth.shape[1], encoding=encoding,
                step=depth.shape[1] * pixels.itemsize)
    msg.data = pixels.tobytes()[:len(pixels.tobytes()) - cut]
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


class Rig:
    """The client's publishers for both cameras and its recorded topics."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.image = {c: client.publisher(Image, f"{NS}/{c}/image_raw") for c in ("rgbd", "half")}
        self.info = {c: client.publisher(CameraInfo, f"{NS}/{c}/camera_info") for c in ("rgbd", "half")}
        self.depth = {c: client.publisher(Image, f"{NS}/{c}/depth") for c in ("rgbd", "half")}
        self.depth_info = client.publisher(CameraInfo, f"{NS}/half/depth_info")
        self.markers = client.subscribe(MarkerArray, f"{NODE}/rgbd/markers")
        self.points = client.subscribe(PointCloud2, f"{NODE}/rgbd/object_points")
        self.tracked = client.subscribe(ObjectMasksArray, f"{NODE}/tracked_objects")
        self.diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
        self.image_rng = np.random.default_rng(0)

    def frame(self, camera: str = "rgbd", depth: np.ndarray | None = None, depth_offset_ns: int = 0,
              depth_message: Image | None = None) -> int:
        """Publish CameraInfo, depth and colour of one moment; returns the colour stamp."""
        stamp = time.time_ns()
        frame_id = f"{camera}_optical"
        self.info[camera].publish(camera_info_msg(W, H, K, frame_id))
        if camera == "half":
            # half size, but a principal point that is not the colour one scaled
            self.depth_info.publish(camera_info_msg(W // 2, H // 2, [F / 2, 0, 5.0, 0, F / 2, 11.25, 0, 0, 1],
                                                    frame_id))
        if depth_message is None:
            depth = np.full((H, W), DEPTH_M, np.float32) if depth is None else depth
            depth_message = depth_msg(depth, stamp + depth_offset_ns, frame_id)
        self.depth[camera].publish(depth_message)
        time.sleep(0.02)
        rgb = self.image_rng.integers(40, 230, (H, W, 3), dtype=np.uint8)
        self.image[camera].publish(image_msg(rgb, stamp, frame_id))
        return stamp

    def newest_held(self, camera: str) -> int | None:
        reply = self.client.call(Query, f"{NODE}/query", Query.Request(camera=camera, text="?", max_frames=1))
        return stamp_of(reply.frame_stamps[-1]) if reply.success else None

    def settle(self, camera: str, stamp: int) -> None:
        wait_for(lambda: self.newest_held(camera) == stamp, 20, f"the node to hold frame {stamp} of {camera}")

    def deliver(self, camera: str, send: Callable[[], int], also: Callable[[], bool] = lambda: True) -> int:
        """``send()`` (publishes one moment, returns its colour stamp) until the node holds the
        frame of the latest call and ``also()``; returns that stamp. For publishers not yet
        known to have reached the node: camera topics are best effort, and what is sent before
        the node matched the publisher is lost."""
        stamps: list[int] = []
        publish_until(lambda: stamps.append(send()), lambda: self.newest_held(camera) == stamps[-1] and also(),
                      20, f"the node to hold the newest frame of {camera}")
        return stamps[-1]

    def status(self, name: str) -> dict[str, str]:
        for array in reversed(self.client.snapshot(self.diagnostics)):
            for status in array.status:
                if status.name == f"{NODE}: {name}":
                    return {kv.key: kv.value for kv in status.values} | {"message": status.message}
        return {}


@pytest.fixture(scope="module")
def rig():
    node = NodeProcess(NS, PARAMS)
    client = Client("depth_test_client")
    try:
        node.wait_ready()
        rig = Rig(client)
        # until the node has taken a frame, a depth image and a CameraInfo of camera rgbd
        rig.deliver("rgbd", rig.frame, lambda: int(rig.status("camera rgbd depth").get("received", 0)) >= 1
                    and rig.status("camera rgbd").get("camera_info", "none received") != "none received")
        yield rig, node
    finally:
        client.close()
        node.stop()


def point_query(x: float, y: float, remember: bool = True) -> Query.Request:
    prompt = VisualPrompt(type=VisualPrompt.POINT, object_index=0, x0=x, y0=y)
    return Query.Request(camera="rgbd", text="what is [0]?", prompts=[prompt], max_frames=1, remember=remember)


def expected_centroid(mask: np.ndarray, z: float = DEPTH_M) -> np.ndarray:
    v, u = np.nonzero(mask)
    return np.array([(u.mean() - K[2]) * z / F, (v.mean() - K[5]) * z / F, z])


def reset(rig: Rig) -> None:
    rig.client.call(ResetMemory, f"{NODE}/reset_memory", ResetMemory.Request())


def test_query_answer_has_the_exact_3d_of_the_segmented_object(rig) -> None:
    r, _ = rig
    stamp = r.frame()
    r.settle("rgbd", stamp)
    reply = r.client.call(Query, f"{NODE}/query", point_query(30.0, 20.0, remember=False))
    assert reply.success, reply.message
    (obj,) = reply.objects
    o3d = obj.object3d
    mask = disc(H, W, 30.0, 20.0)
    assert o3d.status == "" and o3d.point_count == int(mask.sum())
    assert (stamp_of(o3d.header.stamp), o3d.header.frame_id) == (stamp, OPTICAL)
    np.testing.assert_allclose([o3d.centroid.x, o3d.centroid.y, o3d.centroid.z], expected_centroid(mask), atol=1e-6)
    np.testing.assert_allclose([o3d.extent.x, o3d.extent.y, o3d.extent.z], [6 * DEPTH_M / F, 6 * DEPTH_M / F, 0],
                               atol=1e-6)


def test_depth_too_far_off_in_time_gives_no_3d(rig) -> None:
    r, _ = rig
    stamp = r.frame(depth_offset_ns=-400_000_000)        # the only depth near it is 0.4 s older
    r.settle("rgbd", stamp)
    reply = r.client.call(Query, f"{NODE}/query", point_query(30.0, 20.0, remember=False))
    assert reply.success
    o3d = reply.objects[0].object3d
    assert o3d.point_count == 0 and o3d.status.startswith("stamp_offset")
    wait_for(lambda: int(r.status("camera rgbd depth").get("no_3d.stamp_offset", 0)) >= 1, 10,
             "the stamp offset counted in diagnostics")


def _markers_for(r: Rig, stamp: int) -> list[MarkerArray]:
    return [m for m in r.client.snapshot(r.markers) if m.markers and stamp_of(m.markers[0].header.stamp) == stamp]


def test_markers_and_points_follow_a_tracked_object_and_are_deleted_on_remove(rig) -> None:
    r, _ = rig
    reset(r)
    stamp = r.frame()
    r.settle("rgbd", stamp)
    reply = r.client.call(Query, f"{NODE}/query", point_query(20.0, 30.0))
    object_id = reply.objects[0].id
    assert object_id >= 1
    mask = disc(H, W, 20.0, 30.0)
    newer = r.frame(depth=np.where(mask, np.float32(1.0), np.float32(2.5)).astype(np.float32))
    # the tracked object shows on the newer frame with box, centroid and label, in the frame's header
    arrays = wait_for(lambda: _markers_for(r, newer), 20, "markers on the tracked frame")
    markers = {(m.ns, m.id): m for m in arrays[-1].markers}
    assert {("box", object_id), ("centroid", object_id), ("label", object_id)} <= set(markers)
    assert all(m.header.frame_id == OPTICAL and m.action == Marker.ADD for m in arrays[-1].markers)
    centre = markers[("centroid", object_id)].pose.position
    np.testing.assert_allclose([centre.x, centre.y, centre.z], expected_centroid(mask, 1.0), atol=1e-6)
    assert markers[("label", object_id)].text.startswith(f"{object_id} ")
    cloud = wait_for(lambda: [c for c in r.client.snapshot(r.points) if stamp_of(c.header.stamp) == newer], 10,
                     "the point cloud of the tracked frame")[-1]
    assert cloud.header.frame_id == OPTICAL and [f.name for f in cloud.fields] == ["x", "y", "z", "object_id"]
    points = np.frombuffer(bytes(cloud.data), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("id", "<u4")])
    assert len(points) == int(mask.sum()) and set(points["id"]) == {object_id}
    np.testing.assert_allclose(points["z"], 1.0)

    before = len(r.client.snapshot(r.markers))
    removed = r.client.call(RemoveObjects, f"{NODE}/remove_objects", RemoveObjects.Request(ids=[object_id]))
    assert list(removed.removed) == [object_id]
    deleted = wait_for(lambda: [m for m in r.client.snapshot(r.markers)[before:]
                                if any(k.action == Marker.DELETE and k.id == object_id for k in m.markers)], 10,
                       "DELETE markers after the removal")
    assert {k.ns for k in deleted[0].markers if k.action == Marker.DELETE} == {"box", "centroid", "label"}


def test_reset_deletes_the_markers(rig) -> None:
    r, _ = rig
    stamp = r.frame()
    r.settle("rgbd", stamp)
    object_id = r.client.call(Query, f"{NODE}/query", point_query(40.0, 15.0)).objects[0].id
    wait_for(lambda: any(any(k.id == object_id and k.action == Marker.ADD for k in m.markers)
                         for m in r.client.snapshot(r.markers)), 10, "the object's markers")
    before = len(r.client.snapshot(r.markers))
    reset(r)
    wait_for(lambda: any(any(k.id == object_id and k.action == Marker.DELETE for k in m.markers)
                         for m in r.client.snapshot(r.markers)[before:]), 10, "DELETE markers after the reset")


def test_rviz_click_on_the_depth_scene_gives_a_centroid_near_the_clicked_point(rig) -> None:
    r, node = rig
    reset(r)
    stamp = r.frame()
    r.settle("rgbd", stamp)
    # the clicked point lies on the depth surface: pixel (25, 18) at 1.5 m
    x, y = (25 - K[2]) * DEPTH_M / F, (18 - K[5]) * DEPTH_M / F
    click = PointStamped(point=Point(x=x, y=y, z=DEPTH_M))
    click.header.frame_id = OPTICAL
    r.client.publisher(PointStamped, "/clicked_point").publish(click)
    found = wait_for(lambda: [o for m in r.client.snapshot(r.tracked) for o in m.objects
                              if o.label == "click" and o.object3d.point_count > 0], 20, "the clicked object in 3-D")
    c = found[0].object3d.centroid
    assert np.linalg.norm([c.x - x, c.y - y, c.z - DEPTH_M]) < 0.01


def test_bad_depth_is_counted_and_the_node_keeps_answering_in_2d(rig) -> None:
    r, _ = rig
    for encoding, cut, reason in (("8UC1", 0, "bad_encoding"), ("rgb8", 0, "bad_encoding"),
                                  ("32FC1", 7, "truncated")):
        stamp = time.time_ns()
        bad = depth_msg(np.full((H, W), DEPTH_M, np.float32), stamp, OPTICAL, encoding, cut)
        if encoding == "rgb8":
            bad.step = 3 * W
            bad.data = bytes(3 * W * H)
        r.depth["rgbd"].publish(bad)
        wait_for(lambda: int(r.status("camera rgbd depth").get(f"depth_dropped.{reason}", 0)) >= 1, 10,
                 f"depth dropped as {reason}")
    reply = r.client.call(Query, f"{NODE}/query", point_query(30.0, 20.0, remember=False))
    assert reply.success and reply.objects[0].masks


def test_half_resolution_depth_that_does_not_scale_is_reported(rig) -> None:
    r, _ = rig

    def send() -> int:
        stamp = r.frame("half", depth_message=depth_msg(np.full((H // 2, W // 2), DEPTH_M, np.float32),
                                                        0, "half_optical"))
        # the depth above has stamp 0: publish one at the frame's stamp too
        r.depth["half"].publish(depth_msg(np.full((H // 2, W // 2), DEPTH_M, np.float32), stamp, "half_optical"))
        return stamp
    # the first messages on camera half's topics: until the depth and its CameraInfo arrived too
    stamp = r.deliver("half", send, lambda: all(int(r.status("camera half depth").get(key, 0)) >= 1
                                                for key in ("received", "camera_infos")))
    prompt = VisualPrompt(type=VisualPrompt.POINT, object_index=0, x0=30.0, y0=20.0)
    reply = r.client.call(Query, f"{NODE}/query", Query.Request(camera="half", text="[0]?", prompts=[prompt],
                                                                max_frames=1))
    assert reply.success
    o3d = reply.objects[0].object3d
    assert o3d.point_count == 0 and o3d.status.startswith("intrinsics_mismatch") and "cx" in o3d.status
    wait_for(lambda: "intrinsics_mismatch" in r.status("camera half depth").get("last_problem", ""), 10,
             "the mismatch in diagnostics")


def test_a_depth_topic_that_never_publishes_leaves_2d_results_and_a_status_saying_so(rig) -> None:
    r, _ = rig
    info = r.client.publisher(CameraInfo, f"{NS}/silent/camera_info")
    image = r.client.publisher(Image, f"{NS}/silent/image_raw")

    def send() -> int:
        stamp = time.time_ns()
        info.publish(camera_info_msg(W, H, K, "silent_optical"))
        image.publish(image_msg(r.image_rng.integers(40, 230, (H, W, 3), dtype=np.uint8), stamp, "silent_optical"))
        return stamp
    stamp = r.deliver("silent", send)
    prompt = VisualPrompt(type=VisualPrompt.POINT, object_index=0, x0=30.0, y0=20.0)
    reply = r.client.call(Query, f"{NODE}/query", Query.Request(camera="silent", text="[0]?", prompts=[prompt],
                                                                max_frames=1, remember=True))
    assert reply.success, reply.message
    (obj,) = reply.objects
    assert (obj.masks[0].width, obj.masks[0].height) == (W, H) and any(obj.masks[0].data)   # the 2-D answer
    assert obj.object3d.point_count == 0 and obj.object3d.status.startswith("no_depth_yet")
    assert "silent/depth" in obj.object3d.status
    tracked = wait_for(lambda: [o for m in r.client.snapshot(r.tracked) if m.camera == "silent" for o in m.objects
                                if o.id == obj.id], 10, "the kept object tracked on the silent camera")
    assert tracked[-1].object3d.point_count == 0 and tracked[-1].object3d.status.startswith("no_depth_yet")
    status = wait_for(lambda: (s := r.status("camera silent depth")).get("no_3d.no_depth_yet") and s, 10,
                      "the silent camera's depth status")
    assert status["message"] == "no depth received on silent/depth; 2-D only"
    assert status["received"] == status["stored"] == "0"
    reset(r)
