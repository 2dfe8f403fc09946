"""Bad input makes the replay stop with status 2 and a message naming the problem, and no
output bag is left behind, half-written or not (a partial one is removed, and it says so).

The pipeline is the test double (no model). About 5 s.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer

from helpers.fake_pipeline import FakePipeline
from unipixel_ros.replay.__main__ import main
from unipixel_ros.replay.types import typestore
from unipixel_ros.ros.messages import header
from unipixel_ros.ros.synthetic_camera import camera_info, rgb_image
from unipixel_ros.replay.record import START_NS, record



@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "in"
    record(path, 0.5, "mcap", width=64, height=48, seed=1, num_objects=2)
    return path


def _run(capsys, *argv: str) -> tuple[int, str]:
    status = main([*map(str, argv), "--no-progress"], loader=lambda settings, log: FakePipeline(settings, log))
    return status, capsys.readouterr().err


def _nothing_written(out: Path) -> bool:
    return not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_a_missing_topic_is_named_with_the_bags_topics(recording, tmp_path, capsys) -> None:
    status, err = _run(capsys, recording, tmp_path / "out", "--camera", "front=/camera/nothing")
    assert status == 2 and "--camera front: topic /camera/nothing is not in the bag" in err
    assert "/camera/image_raw (sensor_msgs/msg/Image)" in err and _nothing_written(tmp_path / "out")


def test_a_topic_of_the_wrong_type_is_refused(recording, tmp_path, capsys) -> None:
    status, err = _run(capsys, recording, tmp_path / "out", "--camera", "front=/camera/camera_info")
    assert status == 2 and "carries sensor_msgs/msg/CameraInfo, expected sensor_msgs/msg/Image or" in err
    status, err = _run(capsys, recording, tmp_path / "out", "--camera", "front=/camera/image_raw",
                       "--camera-info", "front=/camera/image_raw")
    assert status == 2 and "--camera-info front: topic /camera/image_raw carries sensor_msgs/msg/Image" in err
    assert _nothing_written(tmp_path / "out")


def test_a_truncated_bag_is_reported_and_its_partial_output_removed(recording, tmp_path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text((recording / "metadata.yaml").read_text())
    (data,) = recording.glob("*.mcap")
    (broken / data.name).write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    status, err = _run(capsys, broken, tmp_path / "out", "--camera", "front=/camera/image_raw")
    assert status == 2 and f"cannot read the bag {broken}" in err, err
    assert _nothing_written(tmp_path / "out")


def test_a_request_before_the_cameras_first_frame_is_refused(tmp_path, capsys) -> None:
    bag = tmp_path / "late"
    writer = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    info = writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=typestore())
    image = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=typestore())
    writer.write(info, START_NS, serialize_message(camera_info(32, 24, 60.0)))
    late = START_NS + 500_000_000
    writer.write(image, late, serialize_message(rgb_image(np.zeros((24, 32, 3), np.uint8), header(late, "cam"))))
    writer.close()
    script = tmp_path / "requests.yaml"
    script.write_text(yaml.safe_dump({"requests": [{"at": 0.1, "camera": "front", "query": "anything"}]}))
    status, err = _run(capsys, bag, tmp_path / "out", "--camera", "front=/cam/image_raw", "--requests", script)
    assert status == 2 and "request 0 (query at 0.1 s): camera 'front' has no frame on /cam/image_raw at or " \
        "before 0.1 s (its first frame is at 0.5 s)" in err
    script.write_text(yaml.safe_dump({"requests": [{"at": 3.0, "camera": "front", "click": [1, 2]}]}))
    status, err = _run(capsys, bag, tmp_path / "out", "--camera", "front=/cam/image_raw", "--requests", script)
    assert status == 2 and "request 0 (click at 3 s) is at 3 s, outside the replayed part of the bag" in err
    assert _nothing_written(tmp_path / "out")


def test_an_unknown_encoding_stops_the_replay_and_removes_the_partial_bag(tmp_path, capsys) -> None:
    bag = tmp_path / "depth"
    writer = Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3)
    writer.open()
    image = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=typestore())
    msg = rgb_image(np.zeros((24, 32, 3), np.uint8), header(START_NS, "cam"))
    msg.encoding = "16UC1"
    writer.write(image, START_NS, serialize_message(msg))
    writer.close()
    status, err = _run(capsys, bag, tmp_path / "out", "--camera", "front=/cam/image_raw")
    assert status == 2 and "--camera front: /cam/image_raw: encoding '16UC1' is not supported" in err
    assert f"removed the partial output bag {tmp_path / 'out.partial'}" in err and _nothing_written(tmp_path / "out")


def test_a_bad_request_script_and_parameter_are_named(recording, tmp_path, capsys) -> None:
    script = tmp_path / "requests.yaml"
    script.write_text(yaml.safe_dump({"requests": [{"at": 0.1, "camera": "front", "query": "x", "when": 1}]}))
    status, err = _run(capsys, recording, tmp_path / "out", "--camera", "front=/camera/image_raw",
                       "--requests", script)
    assert status == 2 and "request 0: unknown key 'when'" in err
    status, err = _run(capsys, recording, tmp_path / "out", "--camera", "front=/camera/image_raw",
                       "-p", "window.max_frames=0")
    assert status == 2 and "window.max_frames: must be an integer >= 1" in err and _nothing_written(tmp_path / "out")
