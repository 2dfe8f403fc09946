"""Record the synthetic camera into a rosbag2 (MCAP or sqlite3), with ground truth: a sample recording.

    python -m unipixel_ros.replay.record OUT --seconds 3 --storage mcap

Frame ``i`` of :class:`~unipixel_ros.synthetic.scenes.SyntheticStream` (seeded) is written at
``start_ns + i / rate``, as header stamp and log time alike, on these topics under the
namespace (default ``/camera``):

* ``image_raw``: ``sensor_msgs/Image`` rgb8, built as the synthetic camera driver builds it;
* ``camera_info``: its ideal pinhole ``sensor_msgs/CameraInfo``;
* ``depth/image_raw`` and ``depth/camera_info`` (unless ``--no-depth``): the registered depth
  image (each shape flat at its own depth over a farther wall) as the driver sends it
  (``--depth-encoding`` 16UC1 millimetres or 32FC1 metres) and its CameraInfo, the colour one;
* ``ground_truth``: ``sensor_msgs/Image`` mono8 label image, pixel value k = scene object k - 1
  visible there (objects counted from 1), 0 = background.

Same arguments, same bytes: the recording is deterministic. Written with rosbags; no ROS graph.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer

from unipixel_ros.frames import NS_PER_S
from unipixel_ros.replay.types import typestore
from unipixel_ros.ros.messages import header, image_msg
from unipixel_ros.ros.synthetic_camera import DEPTH_ENCODINGS, camera_info, depth_msg, rgb_image
from unipixel_ros.synthetic.scenes import DEFAULT_HEIGHT, DEFAULT_WIDTH, SceneError, SyntheticStream, depth_image

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
START_NS = 1_700_000_000 * NS_PER_S        # fixed, so that stamps are the same in every run
TOPICS = {"image": ("image_raw", "sensor_msgs/msg/Image"), "info": ("camera_info", "sensor_msgs/msg/CameraInfo"),
          "depth_info": ("depth/camera_info", "sensor_msgs/msg/CameraInfo"),
          "depth": ("depth/image_raw", "sensor_msgs/msg/Image"), "truth": ("ground_truth", "sensor_msgs/msg/Image")}
DEPTH_TOPICS = ("depth", "depth_info")


def label_image(masks: np.ndarray) -> np.ndarray:
    """Per-object visible masks [K, H, W] -> uint8 labels, object k as k + 1 (0 = background)."""
    labels = np.zeros(masks.shape[1:], np.uint8)
    for k, mask in enumerate(masks):
        labels[mask] = k + 1
    return labels


def record(out: Path, seconds: float, storage: str = "mcap", rate: float = 10.0, seed: int = 0,
           width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, num_objects: int | None = None,
           namespace: str = "/camera", frame_id: str = "camera", start_ns: int = START_NS,
           horizontal_fov_deg: float = 60.0, depth_encoding: str = "16UC1") -> int:
    """Write the recording; returns the number of frames. ``depth_encoding`` "" leaves depth out."""
    if not (seconds > 0 and rate > 0):
        raise ValueError(f"seconds and rate must be > 0, got {seconds} and {rate}")
    if depth_encoding and depth_encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding must be one of {', '.join(DEPTH_ENCODINGS)} or empty, got {depth_encoding!r}")
    stream = SyntheticStream(seed, width, height, num_objects)
    info = camera_info(width, height, horizontal_fov_deg)
    count = max(1, int(round(seconds * rate)))
    ns = namespace.rstrip("/")
    writer = Writer(out, version=9, storage_plugin=STORAGES[storage])
    writer.open()
    try:
        conns = {key: writer.add_connection(f"{ns}/{name}", msgtype, typestore=typestore())
                 for key, (name, msgtype) in TOPICS.items() if depth_encoding or key not in DEPTH_TOPICS}
        for i in range(count):
            stamp = start_ns + int(round(i * NS_PER_S / rate))
            frame = stream.frame(i)
            head = header(stamp, frame_id)
            info.header = head
            writer.write(conns["image"], stamp, serialize_message(rgb_image(frame.image, head)))
            writer.write(conns["info"], stamp, serialize_message(info))
            if depth_encoding:
                writer.write(conns["depth_info"], stamp, serialize_message(info))
                writer.write(conns["depth"], stamp, serialize_message(depth_msg(depth_image(frame), head,
                                                                                depth_encoding)))
            writer.write(conns["truth"], stamp,
                         serialize_message(image_msg(label_image(frame.masks), "mono8", stamp, frame_id)))
    finally:
        writer.close()
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unipixel_ros.replay.record", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="bag directory to create (must not exist)")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--storage", choices=tuple(STORAGES), default="mcap")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    p.add_argument("--num-objects", type=int, default=0, help="0: 2-5 at random")
    p.add_argument("--namespace", default="/camera")
    p.add_argument("--frame-id", default="camera")
    p.add_argument("--depth-encoding", choices=DEPTH_ENCODINGS, default="16UC1",
                   help="depth/image_raw encoding: 16UC1 millimetres or 32FC1 metres")
    p.add_argument("--no-depth", action="store_true", help="leave depth/image_raw and depth/camera_info out")
    args = p.parse_args(argv)
    if args.out.exists():
        print(f"record: {args.out} exists already", file=sys.stderr)
        return 2
    try:
        count = record(args.out, args.seconds, args.storage, args.rate, args.seed, args.width, args.height,
                       args.num_objects or None, args.namespace, args.frame_id,
                       depth_encoding="" if args.no_depth else args.depth_encoding)
    except (ValueError, SceneError) as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 2
    print(f"record: wrote {count} frames to {args.out} ({args.storage})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
