"""Replaying a recording with depth (``--depth``, ``--depth-info``): query replies and tracked objects
carry the exact 3-D of their masks over the recorded depth, and the output bag holds the node's
markers and point cloud with the source frames' stamps and frame_ids.

The synthetic recording's depth is exact (16UC1 millimetres; every shape flat at its depth over a
farther wall); the pipeline double's point prompts give discs of DISC_RADIUS, prompted at a
shape's most interior pixel, so on the frame they are made on every 3-D value is known by hand.
About 5 s.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from helpers.bags import read_bag
from helpers.fake_pipeline import FakePipeline, disc
from unipixel_ros.msg import ObjectMasksArray
from unipixel_ros.objects3d import DepthSettings, encode_depth_mm, locate
from unipixel_ros.replay.__main__ import main
from unipixel_ros.ros.ingest import stamp_ns
from unipixel_ros.ros.messages import mask_from_msg
from unipixel_ros.ros.synthetic_camera import pinhole_k
from unipixel_ros.replay.record import START_NS, record
from unipixel_ros.synthetic.scenes import SyntheticStream, depth_image, object_depth_m

W, H, FRAMES, SEED, OBJECTS = 160, 120, 8, 2, 3
K = np.array(pinhole_k(W, H, 60.0)).reshape(3, 3)
FRAME_NS = 100_000_000


def _interior(mask: np.ndarray) -> tuple[float, float]:
    distance = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)


def _depth_m(index: int) -> np.ndarray:
    """Frame ``index``'s depth as the recording holds it (whole millimetres)."""
    return encode_depth_mm(depth_image(STREAM.frame(index))).astype(np.float32) / 1000.0


STREAM = SyntheticStream(SEED, W, H, OBJECTS)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> tuple[dict, dict, list[tuple[int, float, float]]]:
    tmp = tmp_path_factory.mktemp("depth")
    source, out, script = tmp / "in", tmp / "out", tmp / "requests.yaml"
    record(source, FRAMES / 10, "mcap", width=W, height=H, seed=SEED, num_objects=OBJECTS)
    # (frame, shape, x, y): a query prompted on shape 1 at frame 3, a click on shape 2 at frame 5
    prompts = [(3, 1, *_interior(STREAM.frame(3).masks[1])), (5, 2, *_interior(STREAM.frame(5).masks[2]))]
    (_, _, qx, qy), (_, _, cx, cy) = prompts
    script.write_text(yaml.safe_dump({"requests": [
        {"at": 0.35, "camera": "front", "query": "what is [0]?", "remember": True, "max_frames": 1,
         "prompts": [{"type": "point", "object": 0, "x": qx, "y": qy, "stamp": "latest"}]},
        {"at": 0.55, "camera": "front", "click": [cx, cy]}]}))
    status = main([str(source), str(out), "--camera", "front=/camera/image_raw",
                   "--camera-info", "front=/camera/camera_info", "--depth", "front=/camera/depth/image_raw",
                   "--depth-info", "front=/camera/depth/camera_info", "--requests", str(script),
                   "-p", "tracking.rate_hz=5.0", "--no-progress"],
                  loader=lambda settings, log: FakePipeline(settings, log))
    assert status == 0
    return read_bag(out), json.loads(Path(f"{out}_summary.json").read_text()), prompts


def _exact(mask: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and extent of a mask's pixels all at depth z."""
    v, u = np.nonzero(mask)
    x, y = (u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1]
    return np.array([x.mean(), y.mean(), z]), np.array([np.ptp(x), np.ptp(y), 0.0])


def _xyz(p) -> list[float]:
    return [p.x, p.y, p.z]


def test_the_query_reply_and_the_click_carry_the_exact_3d_of_their_discs(replayed) -> None:
    written, summary, prompts = replayed
    tracked = [deserialize_message(raw, ObjectMasksArray) for _, _, raw in written["/unipixel/tracked_objects"]]
    for object_id, (frame, shape, x, y) in enumerate(prompts, start=1):
        stamp = START_NS + frame * FRAME_NS
        mask = disc(H, W, x, y)
        assert STREAM.frame(frame).masks[shape][mask].all()          # the disc lies on the shape alone
        centroid, extent = _exact(mask, object_depth_m(shape, OBJECTS))
        # the first message of the object: published on the frame it was segmented on
        o3d = next(o for m in tracked for o in m.objects if o.id == object_id).object3d
        assert (stamp_ns(o3d.header.stamp), o3d.header.frame_id, o3d.status) == (stamp, "camera", "")
        assert o3d.point_count == int(mask.sum())
        np.testing.assert_allclose(_xyz(o3d.centroid), centroid, atol=1e-6)
        np.testing.assert_allclose(_xyz(o3d.extent), extent, atol=1e-6)
    query, click = summary["requests"]
    assert query["success"] and click["success"], (query["message"], click["message"])
    assert summary["depth"]["front"]["stored"] == str(FRAMES)
    assert summary["cameras"]["front"]["depth"] == "/camera/depth/image_raw"


def test_every_tracked_object_has_the_3d_of_its_mask_over_its_own_frames_depth(replayed) -> None:
    written, _, _ = replayed
    located = 0
    for _, log_ns, raw in written["/unipixel/tracked_objects"]:
        msg = deserialize_message(raw, ObjectMasksArray)
        index = (stamp_ns(msg.header.stamp) - START_NS) // FRAME_NS
        for obj in msg.objects:
            expected = locate(mask_from_msg(obj.masks[0]), _depth_m(index), K, DepthSettings())
            o3d = obj.object3d
            assert stamp_ns(o3d.header.stamp) == stamp_ns(msg.header.stamp) <= log_ns   # a request's: later
            assert o3d.point_count == expected.point_count
            np.testing.assert_allclose(_xyz(o3d.centroid), expected.centroid, atol=1e-5)
            located += 1
    # the query object on frame 3 (its reply), 4 and 5; both on frame 5 (the click), 6 and 7
    assert located == 1 + 1 + 1 + 2 + 2 * 2


def test_markers_and_points_are_written_with_the_source_stamps_and_frame_ids(replayed) -> None:
    written, _, _ = replayed
    tracked = [(log, deserialize_message(raw, ObjectMasksArray)) for _, log, raw in written["/unipixel/tracked_objects"]]
    assert {t for t, _, _ in written["/unipixel/front/markers"]} == {"visualization_msgs/msg/MarkerArray"}
    assert {t for t, _, _ in written["/unipixel/front/object_points"]} == {"sensor_msgs/msg/PointCloud2"}
    markers = [(log, deserialize_message(raw, MarkerArray)) for _, log, raw in written["/unipixel/front/markers"]]
    clouds = [(log, deserialize_message(raw, PointCloud2)) for _, log, raw in written["/unipixel/front/object_points"]]
    assert len(markers) == len(clouds) == len(tracked)
    for (log, msg), (m_log, array), (p_log, cloud) in zip(tracked, markers, clouds):
        stamp = stamp_ns(msg.header.stamp)
        assert m_log == p_log == log and stamp_ns(cloud.header.stamp) == stamp
        assert cloud.header.frame_id == "camera"
        assert cloud.width == sum(o.object3d.point_count for o in msg.objects)
        ids = np.frombuffer(bytes(cloud.data), np.dtype([("xyz", "<f4", 3), ("object_id", "<u4")]))["object_id"]
        assert sorted(set(ids.tolist())) == sorted(o.id for o in msg.objects if o.object3d.point_count)
        added = [mk for mk in array.markers if mk.action == Marker.ADD]
        assert sorted((mk.ns, mk.id) for mk in added) == sorted(
            (ns, o.id) for o in msg.objects if o.object3d.point_count for ns in ("box", "centroid", "label"))
        for mk in array.markers:
            assert (stamp_ns(mk.header.stamp), mk.header.frame_id) == (stamp, "camera")
        for o in msg.objects:
            sphere = next(mk for mk in added if (mk.ns, mk.id) == ("centroid", o.id))
            assert _xyz(sphere.pose.position) == pytest.approx(_xyz(o.object3d.centroid))


def test_without_depth_the_replay_writes_no_3d(tmp_path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    record(source, 0.3, "mcap", width=W, height=H, seed=SEED, num_objects=OBJECTS, depth_encoding="")
    assert main([str(source), str(out), "--camera", "front=/camera/image_raw", "--no-progress"],
                loader=lambda settings, log: FakePipeline(settings, log)) == 0
    written = read_bag(out)
    assert "/camera/depth/image_raw" not in written and "/unipixel/front/markers" not in written
    assert json.loads(Path(f"{out}_summary.json").read_text())["depth"] == {}


def test_depth_flags_are_checked_against_the_cameras_and_the_bag(tmp_path, capsys) -> None:
    source = tmp_path / "in"
    record(source, 0.2, "mcap", width=W, height=H, seed=SEED, num_objects=OBJECTS)
    base = [str(source), str(tmp_path / "out"), "--camera", "front=/camera/image_raw", "--no-progress"]
    for extra, message in ((["--depth", "back=/camera/depth/image_raw"], "--depth back: no --camera back"),
                           (["--depth", "front=/camera/camera_info"], "--depth front: topic /camera/camera_info "
                                                                      "carries sensor_msgs/msg/CameraInfo"),
                           (["--depth-info", "front=/camera/depth/camera_info"], "--depth-info front: no --depth"),
                           (["--depth", "front=/nope"], "--depth front: topic /nope is not in the bag")):
        assert main(base + extra, loader=lambda settings, log: FakePipeline(settings, log)) == 2
        assert message in capsys.readouterr().err
