"""Compressed frames stay compressed in the window until their pixels are used.

A feed with a counting converter (the builtin one, its decode calls counted) shows that
arrival reads headers only, that a click, a query's frame selection and a tracking step
decode each frame once, what the byte bound counts, and what a corrupt payload does on
arrival and when it is first decoded. About 3 s in all, most of it the model host's thread.
"""
from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from helpers.fake_pipeline import FakePipeline
from unipixel_ros.frames import DECODED_FRAMES, FrameDecodeError, WindowLimits
from unipixel_ros.object_store import ObjectStore
from unipixel_ros.ros.clicks import segment_click
from unipixel_ros.ros.conversions import BuiltinConverter, compressed_to_rgb
from unipixel_ros.ros.ingest import CameraFeed
from unipixel_ros.ros.model_host import ModelHost, ModelSettings
from unipixel_ros.ros.params import CameraConfig
from unipixel_ros.ros.query_server import decoded_frames, select_frames
from unipixel_ros.ros.tracking import TrackingCore
from unipixel_ros.tracking_schedule import StepOutcome

H, W = 48, 64
LOG = logging.getLogger("test_lazy_frames")


class CountingConverter(BuiltinConverter):
    """The builtin converter, counting its compressed decodes (optionally slowed down)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        object.__setattr__(self, "calls", [])
        object.__setattr__(self, "delay_s", delay_s)

    def compressed(self, msg) -> np.ndarray:
        self.calls.append(bytes(msg.data[-8:]))
        time.sleep(self.delay_s)
        return super().compressed(msg)


def picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def jpeg(seed: int) -> bytes:
    return cv2.imencode(".jpg", picture(seed))[1].tobytes()


def message(stamp_s: int, payload: bytes, fmt: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = payload
    msg.header.stamp.sec = stamp_s
    msg.header.frame_id = "cam_optical"
    return msg


def bogus_huffman(payload: bytes) -> bytes:
    """A JPEG whose headers up to the frame size are intact but whose Huffman table is not."""
    bad = bytearray(payload)
    i = bad.find(b"\xff\xc4")
    assert 0 < bad.find(b"\xff\xc0") < i, "the encoder writes SOF before DHT"
    bad[i + 5:i + 21] = bytes([255] * 16)
    return bytes(bad)


def make_feed(max_bytes: int = 10**7, max_frames: int = 10, delay_s: float = 0.0):
    converter = CountingConverter(delay_s)
    feed = CameraFeed(CameraConfig("cam", "cam/image_raw", "compressed", ""),
                      WindowLimits(100.0, max_frames, max_bytes), converter, LOG)
    return feed, converter


def test_a_compressed_frame_is_not_decoded_on_arrival() -> None:
    feed, converter = make_feed()
    payloads = [jpeg(s) for s in range(5)]
    assert [feed.on_image(message(s + 1, p)) for s, p in enumerate(payloads)] == ["stored"] * 5
    assert converter.calls == []
    frames = feed.window.snapshot()
    assert [(f.height, f.width, f.shape) for f in frames] == [(H, W, (H, W, 3))] * 5
    stats = feed.window.stats()
    assert stats.bytes == sum(map(len, payloads)) and stats.decoded_frames == 0


@pytest.mark.parametrize("image, ext, fmt", [
    (picture(1), ".jpg", "jpeg"),
    (picture(2), ".jpg", "rgb8; jpeg compressed bgr8"),
    (picture(3), ".png", ""),
    (picture(4)[..., 0].copy(), ".png", "mono8; png compressed mono8"),
])
def test_decoded_pixels_equal_the_eager_path(image: np.ndarray, ext: str, fmt: str) -> None:
    feed, converter = make_feed()
    msg = message(1, cv2.imencode(ext, image)[1].tobytes(), fmt)
    assert feed.on_image(msg) == "stored"
    frame = feed.window.latest()
    np.testing.assert_array_equal(frame.image, compressed_to_rgb(msg))
    assert not frame.image.flags.writeable and len(converter.calls) == 1


def test_a_click_a_query_and_a_tracking_step_decode_each_frame_once() -> None:
    feed, converter = make_feed()
    for s in range(1, 4):
        feed.on_image(message(s, jpeg(s)))
    host = ModelHost(ModelSettings("fake", "cpu", "float32", "torch"), "reject", 0, LOG,
                     lambda settings, log: FakePipeline(settings, log))
    host.start_loading()
    assert host.wait_ready(30)
    store = ObjectStore({"cam": feed}, 4, 8, timelines={"cam": feed.window})
    segment_click(feed, store, host, "cam", (W / 2, H / 2))                 # the newest frame
    frames, images = decoded_frames(select_frames(feed.window, 10.0, 8))    # a query's frames
    assert len(frames) == 3 and len(converter.calls) == 3
    tracking = TrackingCore({"cam": feed}, store, host, LOG)
    assert tracking.step("cam") is StepOutcome.STEPPED                     # onto the newest again
    assert len(converter.calls) == 3
    np.testing.assert_array_equal(images[-1], feed.window.latest().image)
    host.unload()


def test_concurrent_readers_decode_a_frame_once() -> None:
    feed, converter = make_feed(delay_s=0.05)
    feed.on_image(message(1, jpeg(1)))
    frame = feed.window.latest()
    got: list[np.ndarray] = []
    readers = [threading.Thread(target=lambda: got.append(frame.image)) for _ in range(4)]
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    assert len(converter.calls) == 1 and all(g is got[0] for g in got)


def test_the_byte_bound_counts_payloads_and_the_decoded_images_kept() -> None:
    payloads = [jpeg(s) for s in range(4)]
    feed, converter = make_feed(max_frames=3)
    for s, p in enumerate(payloads):
        feed.on_image(message(s + 1, p))
    held = sum(map(len, payloads[1:]))
    frames = feed.window.snapshot()
    for f in frames:
        f.image
    stats = feed.window.stats()
    assert stats.decoded_frames == DECODED_FRAMES == 2
    assert stats.bytes == held + DECODED_FRAMES * H * W * 3
    feed.on_image(message(10, payloads[0]))              # frames 2 and 3 leave, 3's decoded image with it
    feed.on_image(message(11, payloads[0]))
    stats = feed.window.stats()
    assert stats.frames == 3 and stats.decoded_frames == 1
    assert stats.bytes == len(payloads[3]) + 2 * len(payloads[0]) + H * W * 3

    # A window with room for the payloads but not for a decoded image keeps none.
    tight, converter = make_feed(max_bytes=sum(map(len, payloads)) + H * W * 3 - 1, max_frames=4)
    for s, p in enumerate(payloads):
        tight.on_image(message(s + 1, p))
    np.testing.assert_array_equal(tight.window.latest().image, cv2.cvtColor(
        cv2.imdecode(np.frombuffer(payloads[-1], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    stats = tight.window.stats()
    assert (stats.frames, stats.decoded_frames, stats.bytes) == (4, 0, sum(map(len, payloads)))


def test_a_broken_header_or_truncated_payload_is_dropped_on_arrival() -> None:
    feed, converter = make_feed()
    good = jpeg(1)
    png = cv2.imencode(".png", picture(2))[1].tobytes()
    outcomes = [feed.on_image(message(1, b"\xff\xd8\xff" + bytes(100))),     # no segment structure
                feed.on_image(message(2, good[:len(good) // 2])),            # truncated: no end marker
                feed.on_image(message(3, good[:150] + good[-2:])),           # ends before its frame header
                feed.on_image(message(4, png[:-20], "png"))]                 # truncated: no IEND
    assert outcomes == ["corrupt_payload"] * 4
    assert converter.calls == [] and feed.window.snapshot() == ()
    assert feed.counters().dropped == {"corrupt_payload": 4}


def test_a_payload_that_fails_to_decode_when_used_leaves_the_window_and_is_counted() -> None:
    feed, converter = make_feed()
    for s, payload in ((1, jpeg(1)), (2, bogus_huffman(jpeg(2))), (3, jpeg(3))):
        assert feed.on_image(message(s, payload)) == "stored"
    bad = feed.window.snapshot()[1]
    frames, images = decoded_frames(select_frames(feed.window, 10.0, 8))
    assert [f.stamp_ns // 10**9 for f in frames] == [1, 3] and len(images) == 2
    assert [f.stamp_ns // 10**9 for f in feed.window.snapshot()] == [1, 3]
    c = feed.counters()
    assert c.dropped == {"corrupt_payload": 1} and c.stored == 3
    assert c.last_drop.startswith("corrupt_payload: frame 2000000000 ns, decoded when used: JPEG payload")
    assert feed.window.stats().bytes == sum(len(f.encoded.data) for f in frames) + 2 * H * W * 3
    calls = len(converter.calls)
    with pytest.raises(FrameDecodeError, match="does not decode"):
        bad.image
    assert len(converter.calls) == calls and feed.counters().dropped == {"corrupt_payload": 1}
