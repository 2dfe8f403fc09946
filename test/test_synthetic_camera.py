"""The synthetic camera as a real process: what a subscriber receives is the seeded stream."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from unipixel_ros.ros.conversions import compressed_to_rgb, raw_to_rgb  # noqa: E402
from unipixel_ros.synthetic.scenes import SyntheticStream  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
SEED, WIDTH, HEIGHT, RATE, START = 13, 160, 96, 20.0, 1000
NAMESPACE = "/synthetic_test"
FRAMES_WANTED = 20


def start_camera(*params: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    args = [sys.executable, "-m", "unipixel_ros.ros.synthetic_camera", "--ros-args", "-r", f"__ns:={NAMESPACE}"]
    for param in params:
        args += ["-p", param]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def received():
    """Images, camera infos and compressed images from a camera process, plus its stream."""
    camera = start_camera(f"seed:={SEED}", f"width:={WIDTH}", f"height:={HEIGHT}", f"rate:={RATE}",
                          "frame_id:=synthetic_optical", f"start_index:={START}", "compressed_format:=png")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("synthetic_camera_probe", context=context)
    got: dict[type, list] = {Image: [], CameraInfo: [], CompressedImage: []}
    topics = {Image: "image_raw", CameraInfo: "camera_info", CompressedImage: "image_raw/compressed"}
    for kind, topic in topics.items():
        node.create_subscription(kind, f"{NAMESPACE}/{topic}", got[kind].append, 50)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and min(len(v) for v in got.values()) < FRAMES_WANTED:
            executor.spin_once(timeout_sec=0.1)
            assert camera.poll() is None, camera.communicate()[1]
        yield got, SyntheticStream(SEED, WIDTH, HEIGHT)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        camera.terminate()
        camera.wait(timeout=10)


def test_images_have_the_declared_layout(received) -> None:
    got, _ = received
    assert len(got[Image]) >= FRAMES_WANTED
    for msg in got[Image]:
        assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", WIDTH, HEIGHT, 3 * WIDTH)
        assert msg.header.frame_id == "synthetic_optical"


def test_images_are_consecutive_frames_of_the_seeded_stream(received) -> None:
    got, stream = received
    first = stream.index_of(raw_to_rgb(got[Image][0]), range(START, START + 200))
    assert first is not None, "the first image is none of the stream's frames after start_index"
    for offset, msg in enumerate(got[Image]):
        assert np.array_equal(raw_to_rgb(msg), stream.frame(first + offset).image), offset


def test_frames_arrive_at_the_rate(received) -> None:
    got, _ = received
    stamps = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in got[Image]])
    periods = np.diff(stamps)
    assert (periods > 0).all()
    # The median ignores an occasional late tick on a busy machine.
    assert np.median(periods) == pytest.approx(1.0 / RATE, rel=0.2)


def test_camera_info_is_the_pinhole_of_the_image_size(received) -> None:
    got, _ = received
    info = got[CameraInfo][-1]
    focal = (WIDTH / 2) / math.tan(math.radians(60.0) / 2)
    assert (info.width, info.height, info.header.frame_id) == (WIDTH, HEIGHT, "synthetic_optical")
    assert np.allclose(info.k, [focal, 0, (WIDTH - 1) / 2, 0, focal, (HEIGHT - 1) / 2, 0, 0, 1])
    assert np.allclose(np.reshape(info.p, (3, 4))[:, :3], np.reshape(info.k, (3, 3)))
    # Each info shares its image's stamp. The camera publishes the info first, and the
    # subscriptions match at different moments, so only infos inside the span of received
    # images are sure to have their image among those received.
    image_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got[Image]}
    inside = [stamp for stamp in ((m.header.stamp.sec, m.header.stamp.nanosec) for m in got[CameraInfo])
              if min(image_stamps) <= stamp <= max(image_stamps)]
    assert len(inside) >= FRAMES_WANTED // 2
    assert set(inside) <= image_stamps


def test_compressed_png_decodes_to_the_raw_image(received) -> None:
    got, _ = received
    raw = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in got[Image]}
    matched = 0
    for msg in got[CompressedImage]:
        assert msg.format == "rgb8; png compressed bgr8"
        twin = raw.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if twin is not None:
            assert np.array_equal(compressed_to_rgb(msg), raw_to_rgb(twin))
            matched += 1
    assert matched >= FRAMES_WANTED // 2


def test_bad_parameter_exits_with_a_message_naming_it() -> None:
    camera = start_camera("rate:=0.0")
    _, stderr = camera.communicate(timeout=30)
    assert camera.returncode == 2
    assert "rate must be a positive number" in stderr


def test_jpeg_payload_decodes_close_to_the_image() -> None:
    from std_msgs.msg import Header

    from unipixel_ros.ros.synthetic_camera import compressed_image

    image = SyntheticStream(SEED, WIDTH, HEIGHT).frame(0).image
    msg = compressed_image(image, Header(frame_id="cam"), "jpeg", 95)
    assert msg.format == "rgb8; jpeg compressed bgr8" and bytes(msg.data[:3]) == b"\xff\xd8\xff"
    # Quality 95 JPEG: a few grey levels of error on average, channel order preserved
    # (a swapped red/blue would be off by ~100 on the saturated shapes).
    error = np.abs(compressed_to_rgb(msg).astype(int) - image.astype(int))
    assert error.mean() < 3.0
