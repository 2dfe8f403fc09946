"""A camera driver stand-in: publishes the frames a JSON plan describes, at the plan's rates.

    python test/helpers/camera_publisher.py PLAN.json

Plan::

    {"qos": "reliable" | "best_effort", "depth": 200, "match_timeout_s": 30,
     "streams": [
       {"topic": "/ns/cam/image_raw", "kind": "raw", "rate_hz": 20,
        "frames": [{"stamp_ns": 1, "frame_id": "cam", "seed": 0, "height": 12, "width": 16,
                    "encoding": "bgr8", "pad": 0, "fault": null}, ...]},
       {"topic": "/ns/cam/image_raw/compressed", "kind": "compressed", "rate_hz": 10,
        "frames": [{..., "codec": "jpeg", "format": "jpeg", "fault": "garbage"}]},
       {"topic": "/ns/cam/camera_info", "kind": "camera_info", "frame_id": "cam",
        "width": 16, "height": 12, "k": [9 floats]}]}

Faults: ``truncate`` (data 7 bytes short), ``step_mismatch`` (step 2 bytes longer than
the rows), ``zero_size`` (0x0, no data), ``garbage`` (a JPEG signature then noise).

It waits until every topic has a subscriber, publishes the camera infos, then the
frames of all streams interleaved by their rates, waits until reliable subscribers
acknowledged everything, prints ``published <n>`` and exits.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # the test directory
from helpers.patterns import compressed_payload, pattern, raw_payload  # noqa: E402

ACK_TIMEOUT = Duration(seconds=15)
TYPES = {"raw": Image, "compressed": CompressedImage, "camera_info": CameraInfo}


def stamp(msg, ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)


def build_frame(kind: str, spec: dict) -> Image | CompressedImage:
    rgb = pattern(spec["seed"], spec["height"], spec["width"])
    fault = spec.get("fault")
    if kind == "compressed":
        msg = CompressedImage(format=spec.get("format", spec["codec"]))
        payload = compressed_payload(rgb, spec["codec"])
        if fault == "garbage":
            payload = b"\xff\xd8\xff\xe0" + np.random.default_rng(spec["seed"]).bytes(len(payload))
        msg.data = payload
    else:
        data, step = raw_payload(rgb, spec["encoding"], spec.get("pad", 0))
        msg = Image(height=spec["height"], width=spec["width"], encoding=spec["encoding"], step=step)
        if fault == "truncate":
            data = data[:-7]
        elif fault == "step_mismatch":
            msg.step = step + 2
        elif fault == "zero_size":
            msg.height = msg.width = msg.step = 0
            data = b""
        msg.data = data
    stamp(msg, spec["stamp_ns"])
    msg.header.frame_id = spec["frame_id"]
    return msg


def build_info(spec: dict) -> CameraInfo:
    msg = CameraInfo(width=spec["width"], height=spec["height"], distortion_model="plumb_bob")
    msg.k = [float(v) for v in spec["k"]]
    msg.d = [0.0] * 5
    msg.header.frame_id = spec["frame_id"]
    return msg


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    rclpy.init()
    node = rclpy.create_node("camera_publisher")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=plan.get("depth", 200),
                     durability=DurabilityPolicy.VOLATILE,
                     reliability=ReliabilityPolicy.RELIABLE if plan["qos"] == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    pubs = [node.create_publisher(TYPES[s["kind"]], s["topic"], qos) for s in plan["streams"]]
    deadline = time.monotonic() + plan.get("match_timeout_s", 30)
    while any(p.get_subscription_count() == 0 for p in pubs):
        if time.monotonic() > deadline:
            missing = [p.topic_name for p in pubs if p.get_subscription_count() == 0]
            sys.exit(f"no subscriber on {missing}")
        time.sleep(0.05)
    time.sleep(0.3)                       # let the subscribers' side of the match settle too

    schedule = []
    for pub, stream in zip(pubs, plan["streams"]):
        if stream["kind"] == "camera_info":
            pub.publish(build_info(stream))
            pub.wait_for_all_acked(ACK_TIMEOUT)
            continue
        period = 1.0 / stream["rate_hz"]
        schedule += [(i * period, j, pub, build_frame(stream["kind"], f))
                     for j, (i, f) in enumerate(enumerate(stream["frames"]))]
    time.sleep(0.2)
    schedule.sort(key=lambda item: (item[0], item[1]))
    start = time.monotonic()
    for offset, _, pub, msg in schedule:
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pub.publish(msg)
    for pub in pubs:
        pub.wait_for_all_acked(ACK_TIMEOUT)
    print(f"published {len(schedule)}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
