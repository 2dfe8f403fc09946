"""The replay answers and tracks exactly as the live node does on the same frames and requests.

A synthetic recording is replayed with a remembered text query and a click (shipped synthetic
model, CPU, float32). The same frames are then streamed to a live node process with the same
parameters, one at a time: each frame is published only after the node's tracked output for the
previous one arrived, so the node steps tracking on every frame, as the replay does; the query
is asked and the click made after the same frames. The live service reply must match the
replay's summary (answer, frames, ids, labels, scores, every mask's bytes), and every
``tracked_objects``, label image and overlay the node published from the query on must equal, field
for field, the messages in the replay's output bag. Takes about 40-60 s on 2 cores.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Point  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from helpers.perception_client import Client, stamp_of, wait_for  # noqa: E402
from helpers.ros_client import interrupt, spawn  # noqa: E402
from unipixel_ros.msg import ObjectMasksArray  # noqa: E402
from unipixel_ros.replay.__main__ import main  # noqa: E402
from unipixel_ros.replay.types import typestore  # noqa: E402
from unipixel_ros.srv import Query  # noqa: E402
from unipixel_ros.replay.record import record  # noqa: E402
from unipixel_ros.synthetic.scenes import SyntheticStream  # noqa: E402

pytestmark = pytest.mark.ros

NS, CAMERA, SEED, OBJECTS, FRAMES, QUERY_AT, CLICK_AT = "/replay_parity", "front", 0, 3, 8, 3, 5
PARAMS = {"cameras": [CAMERA], f"cameras.{CAMERA}.image_topic": f"{CAMERA}/image_raw",
          "model.device": "cpu", "model.dtype": "float32", "tracking.rate_hz": 20.0, "qos.input": "reliable",
          "query.window_seconds": 10.0, "query.max_frames": 16}
OUTPUTS = ("tracked_objects", f"{CAMERA}/label_image", f"{CAMERA}/overlay")
# Both sides compute with the same torch thread count: float sums split over a different number
# of threads differ in their last bits, enough to flip a mask pixel now and then.
THREADS = 1


@pytest.fixture(scope="module")
def replayed():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        record(tmp / "in", FRAMES / 10, "mcap", seed=SEED, num_objects=OBJECTS)
        first = SyntheticStream(SEED, num_objects=OBJECTS).frame(0)
        scene, _ = SyntheticStream(SEED, num_objects=OBJECTS).scene_at(0)
        text = f"Please segment the {scene.objects[0].colour} {scene.objects[0].shape}."
        x, y = (float(v) for v in SyntheticStream(SEED, num_objects=OBJECTS).frame(CLICK_AT).centers[1])
        (tmp / "params.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": PARAMS}}))
        (tmp / "requests.yaml").write_text(yaml.safe_dump({"ground_truth_topic": "/camera/ground_truth", "requests": [
            {"at": QUERY_AT / 10, "camera": CAMERA, "query": text, "remember": True},
            {"at": CLICK_AT / 10, "camera": CAMERA, "click": [x, y]}]}))
        threads = torch.get_num_threads()
        torch.set_num_threads(THREADS)
        try:
            status = main([str(tmp / "in"), str(tmp / "out"), "--camera", f"{CAMERA}=/camera/image_raw",
                           "--params", str(tmp / "params.yaml"), "--requests", str(tmp / "requests.yaml"),
                           "--namespace", NS, "--no-progress"])
        finally:
            torch.set_num_threads(threads)
        assert status == 0
        summary = json.loads((tmp / "out_summary.json").read_text())
        with AnyReader([tmp / "in"], default_typestore=typestore()) as reader:
            frames = [deserialize_message(bytes(raw), Image) for c, _, raw in reader.messages()
                      if c.topic == "/camera/image_raw"]
        with AnyReader([tmp / "out"], default_typestore=typestore()) as reader:
            written = {name: [bytes(raw) for c, _, raw in reader.messages() if c.topic == f"{NS}/unipixel/{name}"]
                       for name in OUTPUTS}
        assert first.image.tobytes() == bytes(frames[0].data)
        yield tmp, text, (x, y), summary, frames, written


@pytest.fixture(scope="module")
def live(replayed):
    tmp, text, (x, y), _, frames, _ = replayed
    with tempfile.TemporaryFile("w+") as stderr:
        proc = spawn(["-m", "unipixel_ros.ros.node", "--ros-args", "-r", f"__ns:={NS}",
                      "--params-file", str(tmp / "params.yaml")], extra_env={"OMP_NUM_THREADS": str(THREADS)},
                     stdout=stderr, stderr=stderr)
        client = Client("replay_parity_client")
        try:
            received = {name: client.subscribe(ObjectMasksArray if name == "tracked_objects" else Image,
                                               f"{NS}/unipixel/{name}") for name in OUTPUTS}
            images = client.publisher(Image, f"{NS}/{CAMERA}/image_raw", timeout=60)
            wait_for(lambda: all(client.node.count_publishers(f"{NS}/unipixel/{n}") for n in OUTPUTS), 30,
                     "the node's output publishers")
            time.sleep(0.5)                    # let the subscriptions match

            def tracked_on(stamp: int, objects: int, count: int = 1) -> bool:
                msgs = [m for m in client.snapshot(received["tracked_objects"])
                        if stamp_of(m.header.stamp) == stamp and len(m.objects) == objects]
                return len(msgs) >= count

            reply, objects = None, 0
            for i, frame in enumerate(frames):
                images.publish(frame)
                wait_for(lambda: proc.poll() is not None or tracked_on(stamp_of(frame.header.stamp), objects), 60,
                         f"the node's tracked output on frame {i}")
                assert proc.poll() is None
                if i == QUERY_AT:
                    reply = client.call(Query, f"{NS}/unipixel/query",
                                        Query.Request(camera=CAMERA, text=text, remember=True), timeout=180)
                    assert reply.success, reply.message
                    objects += len(reply.objects)
                    wait_for(lambda: tracked_on(stamp_of(frame.header.stamp), objects), 30, "the query's outputs")
                if i == CLICK_AT:
                    client.publisher(Point, f"{NS}/{CAMERA}/image_raw_mouse_left").publish(Point(x=x, y=y))
                    objects += 1
                    wait_for(lambda: tracked_on(stamp_of(frame.header.stamp), objects), 60, "the click's outputs")
            # The label image and overlay of a frame are published after its tracked_objects:
            # wait for the last frame's on every output (a fixed pause was too short under load).
            last = stamp_of(frames[-1].header.stamp)
            wait_for(lambda: all(any(stamp_of(m.header.stamp) == last for m in client.snapshot(received[n]))
                                 for n in OUTPUTS), 30, "every output of the last frame")
            yield reply, {name: client.snapshot(msgs) for name, msgs in received.items()}
        finally:
            client.close()
            interrupt(proc, timeout=20)


def test_the_query_reply_equals_the_replayed_query(replayed, live) -> None:
    _, _, _, summary, frames, _ = replayed
    reply, _ = live
    (query, click) = summary["requests"]
    assert query["success"] and query["answer"] == reply.answer
    assert query["frame_stamps"] == [stamp_of(s) for s in reply.frame_stamps] \
        == [stamp_of(f.header.stamp) for f in frames[:QUERY_AT + 1]]
    assert [(o["id"], o["label"], o["score"], o["lost"]) for o in query["objects"]] == \
        [(o.id, o.label, o.score, o.lost) for o in reply.objects]
    assert [o["mask_sha1"] for o in query["objects"]] == \
        [[hashlib.sha1(bytes(m.data)).hexdigest() for m in o.masks] for o in reply.objects]
    assert click["success"] and click["objects"][0]["id"] == len(reply.objects) + 1


def test_every_output_from_the_query_on_equals_the_replayed_bag(replayed, live) -> None:
    _, _, _, _, frames, written = replayed
    _, received = live
    query_stamp = stamp_of(frames[QUERY_AT].header.stamp)
    for name in OUTPUTS:
        live_msgs = [m for m in received[name] if stamp_of(m.header.stamp) >= query_stamp]
        replayed_msgs = [deserialize_message(b, ObjectMasksArray if name == "tracked_objects" else Image)
                         for b in written[name]]
        replayed_msgs = [m for m in replayed_msgs if stamp_of(m.header.stamp) >= query_stamp]
        # frames QUERY_AT..end once each, plus the query's and the click's outputs on their frames
        assert len(live_msgs) == FRAMES - QUERY_AT + 2, (name, [stamp_of(m.header.stamp) for m in live_msgs])
        # every field (CDR padding bytes are undefined); the first difference named, not the whole lists
        # (pytest's diff of a few dozen image messages takes minutes to render)
        differ = [i for i, (a, b) in enumerate(zip(live_msgs, replayed_msgs)) if a != b]
        assert len(live_msgs) == len(replayed_msgs) and not differ, \
            (name, len(live_msgs), len(replayed_msgs), differ, _first_difference(live_msgs, replayed_msgs, differ))


def _first_difference(live: list, replayed: list, differ: list[int]) -> str:
    if not differ:
        return ""
    a, b = live[differ[0]], replayed[differ[0]]
    fields = [f for f in a.get_fields_and_field_types() if getattr(a, f) != getattr(b, f)]
    return f"message {differ[0]} (stamp {stamp_of(a.header.stamp)}): fields {fields} differ"
