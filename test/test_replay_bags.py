"""Replaying recordings of both storage formats, and what the output bag holds.

The pipeline is the test double of test/helpers/fake_pipeline.py (deterministic masks from the
prompts and the colours named), so these tests check the replay's reading, running and writing,
not the model (test_replay_node_parity.py runs the real one). About 10 s.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from helpers.bags import read_bag
from helpers.fake_pipeline import FakePipeline
from unipixel_ros.msg import ObjectMasksArray
from unipixel_ros.replay.__main__ import main
from unipixel_ros.ros.ingest import stamp_ns
from unipixel_ros.replay.record import START_NS, record
from unipixel_ros.synthetic.scenes import SyntheticStream

W, H, FRAMES, SEED, OBJECTS = 160, 120, 8, 2, 3


def _replay(tmp: Path, storage_in: str, storage_out: str, name: str = "out") -> tuple[Path, dict]:
    source = tmp / f"in_{storage_in}"
    if not source.exists():
        record(source, FRAMES / 10, storage_in, width=W, height=H, seed=SEED, num_objects=OBJECTS)
    scene, _ = SyntheticStream(SEED, W, H, OBJECTS).scene_at(0)
    x, y = (float(v) for v in SyntheticStream(SEED, W, H, OBJECTS).frame(5).centers[1])
    script = tmp / "requests.yaml"
    script.write_text(yaml.safe_dump({"ground_truth_topic": "/camera/ground_truth", "requests": [
        {"at": 0.3, "camera": "front", "query": f"the {scene.objects[0].colour} one", "remember": True,
         "truth": [1]},
        {"at": 0.5, "camera": "front", "click": [x, y]}]}))
    out = tmp / name
    status = main([str(source), str(out), "--camera", "front=/camera/image_raw",
                   "--camera-info", "front=/camera/camera_info", "--requests", str(script),
                   "--storage", storage_out, "-p", "tracking.rate_hz=5.0", "--no-progress"],
                  loader=lambda settings, log: FakePipeline(settings, log))
    assert status == 0
    return out, json.loads(Path(f"{out}_summary.json").read_text())


@pytest.mark.parametrize("storage_in, storage_out", [("mcap", "sqlite3"), ("sqlite3", "mcap")])
def test_a_recording_of_either_format_replays_into_a_bag_of_the_node_outputs(tmp_path, storage_in,
                                                                               storage_out) -> None:
    out, summary = _replay(tmp_path, storage_in, storage_out)
    source, written = read_bag(tmp_path / f"in_{storage_in}"), read_bag(out)
    # rosbag2 names the storage file after the bag's folder: the bag is the one asked for, not a renamed temporary
    assert [p.name for p in out.glob("*.mcap" if storage_out == "mcap" else "*.db3")] == \
        [f"{out.name}.{'mcap' if storage_out == 'mcap' else 'db3'}"]
    assert not Path(f"{out}.partial").exists()
    for topic in ("/camera/image_raw", "/camera/camera_info", "/camera/ground_truth"):
        assert written[topic] == source[topic]            # copied as recorded: types, log times, bytes
    frame_stamps = [START_NS + i * 100_000_000 for i in range(FRAMES)]
    types = {topic: {t for t, _, _ in msgs} for topic, msgs in written.items()}
    assert types["/unipixel/tracked_objects"] == {"unipixel_ros/msg/ObjectMasksArray"}
    assert types["/unipixel/front/label_image"] == types["/unipixel/front/overlay"] == {"sensor_msgs/msg/Image"}

    tracked = [deserialize_message(raw, ObjectMasksArray) for _, _, raw in written["/unipixel/tracked_objects"]]
    # one per frame, and one more on the query's and on the click's frame
    assert [stamp_ns(m.header.stamp) for m in tracked] == sorted(frame_stamps + frame_stamps[3:4] + frame_stamps[5:6])
    assert [len(m.objects) for m in tracked] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    log_times = [log for _, log, _ in written["/unipixel/tracked_objects"]]
    assert log_times == [stamp_ns(m.header.stamp) for m in tracked]   # written when its frame was logged
    for msg in tracked:
        assert msg.header.frame_id == "camera" and msg.camera == "front"
        for obj in msg.objects:
            assert [stamp_ns(s) for s in obj.stamps] == [stamp_ns(msg.header.stamp)]
            assert obj.masks[0].header == msg.header and obj.masks[0].encoding == "mono8"
    for topic, encoding in (("/unipixel/front/label_image", "mono16"), ("/unipixel/front/overlay", "bgr8")):
        images = [deserialize_message(raw, Image) for _, _, raw in written[topic]]
        assert [m.header for m in images] == [m.header for m in tracked]
        assert {(m.encoding, m.width, m.height) for m in images} == {(encoding, W, H)}
    labels = np.frombuffer(bytes(deserialize_message(written["/unipixel/front/label_image"][-1][2], Image).data),
                           "<u2").reshape(H, W)
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels == 2).any()

    query, click = summary["requests"]
    assert query["success"] and query["frame_stamps"] == frame_stamps[:4]
    (obj,) = query["objects"]
    assert obj["id"] == 1 and obj["truth"] == 1 and obj["frames"] == 4 and 0.5 < obj["J"] <= 1.0
    assert obj["tracked"]["tracked_frames"] == FRAMES - 4 and obj["tracked"]["frames"] == FRAMES - 4
    assert click["success"] and click["objects"][0]["id"] == 2 and click["objects"][0]["truth"] == 2
    assert click["objects"][0]["tracked"]["tracked_frames"] == FRAMES - 6
    assert summary["frames"] == FRAMES and summary["camera_counters"]["front"]["stored"] == FRAMES
    rows = list(csv.DictReader(Path(f"{out}_summary.csv").open()))
    assert [(r["request"], r["kind"], r["object_id"]) for r in rows] == [("0", "query", "1"), ("1", "click", "2")]


def test_replaying_twice_writes_the_same_messages(tmp_path) -> None:
    first, _ = _replay(tmp_path, "mcap", "mcap", "first")
    second, _ = _replay(tmp_path, "mcap", "mcap", "second")
    a, b = read_bag(first), read_bag(second)
    assert a.keys() == b.keys()
    for topic in a:       # compared as messages: CDR's alignment padding bytes are not defined
        cls = ObjectMasksArray if topic.endswith("tracked_objects") else None
        decode = (lambda raw: deserialize_message(raw, cls)) if cls else (lambda raw: raw)
        if topic.startswith("/unipixel/front/"):
            decode = lambda raw: deserialize_message(raw, Image)  # noqa: E731
        assert [(t, log, decode(raw)) for t, log, raw in a[topic]] == [(t, log, decode(raw)) for t, log, raw in b[topic]]


def test_start_and_end_replay_part_of_the_bag(tmp_path) -> None:
    source = tmp_path / "in"
    record(source, FRAMES / 10, "mcap", width=W, height=H, seed=SEED, num_objects=OBJECTS)
    out = tmp_path / "out"
    assert main([str(source), str(out), "--camera", "front=/camera/image_raw", "--start", "0.2", "--end", "0.45",
                 "--no-progress"], loader=lambda settings, log: FakePipeline(settings, log)) == 0
    stamps = [log for _, log, _ in read_bag(out)["/camera/image_raw"]]
    assert stamps == [START_NS + i * 100_000_000 for i in (2, 3, 4)]
