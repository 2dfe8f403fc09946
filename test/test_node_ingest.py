"""The node's input side over real DDS: a publisher process streams cameras to two node
processes; the windows they hold are read back and compared frame by frame.

Node /enc: every supported encoding, stamps out of order, bad input, CameraInfo.
Node /evict: decimation 2 with each window bound (duration, count, bytes) binding on one camera.
Subscriptions are made reliable here (a parameter) so that exact contents can be asserted.
"""
import json

import numpy as np
import pytest

from helpers.patterns import expected_compressed, expected_raw, pattern
from helpers.ros_client import HELPERS, NodeHost, RosClient, spawn

pytestmark = pytest.mark.ros

BASE = 1_700_000_000 * 10**9
MS = 10**6
H, W = 12, 16
K = [50.0, 0.0, 8.0, 0.0, 51.0, 6.0, 0.0, 0.0, 1.0]
COMPRESSED = {"jpeg", "png", "badjpeg"}


def frames(cam_index: int, stamps_ms: list[int], frame_id: str, h: int = H, w: int = W,
           **fields) -> list[dict]:
    return [dict(stamp_ns=BASE + s * MS, frame_id=frame_id, seed=cam_index * 100 + i,
                 height=h, width=w, **fields) for i, s in enumerate(stamps_ms)]


def raw_stream(topic: str, rate_hz: float, frame_specs: list[dict]) -> dict:
    return {"topic": topic, "kind": "raw", "rate_hz": rate_hz, "frames": frame_specs}


def compressed_stream(topic: str, rate_hz: float, frame_specs: list[dict]) -> dict:
    return {"topic": topic, "kind": "compressed", "rate_hz": rate_hz, "frames": frame_specs}


# -- node /enc ------------------------------------------------------------------------------
ENC_STREAMS = {
    # the two "real" cameras: raw at 20 Hz with CameraInfo, JPEG at 10 Hz
    "rgb8": raw_stream("/enc/rgb8/image_raw", 20,
                       frames(0, [50 * i for i in range(10)], "rgb8_optical", encoding="rgb8")),
    "jpeg": compressed_stream("/enc/jpeg/image_raw/compressed", 10,
                              frames(1, [100 * i for i in range(10)], "jpeg_optical", codec="jpeg",
                                     format="rgb8; jpeg compressed bgr8")),
    # the remaining encodings, some with padded rows; bgr8 on a configured topic name
    "bgr8": raw_stream("/enc/sensors/left", 30, frames(2, [0, 33, 66], "bgr8", encoding="bgr8", pad=4)),
    "rgba8": raw_stream("/enc/rgba8/image_raw", 30, frames(3, [0, 33, 66], "rgba8", encoding="rgba8")),
    "bgra8": raw_stream("/enc/bgra8/image_raw", 30, frames(4, [0, 33, 66], "bgra8", encoding="bgra8")),
    "mono8": raw_stream("/enc/mono8/image_raw", 30, frames(5, [0, 33, 66], "mono8", encoding="mono8", pad=3)),
    "png": compressed_stream("/enc/png/image_raw/compressed", 30,
                             frames(6, [0, 33, 66], "png", codec="png")),
    # stamps out of order with one duplicate
    "order": raw_stream("/enc/order/image_raw", 30,
                        frames(7, [10, 20, 40, 30, 30, 50], "order", encoding="rgb8")),
    # good, wrong encoding, truncated, step/size mismatch, zero-sized, good
    "bad": raw_stream("/enc/bad/image_raw", 30, [
        dict(f, **fault) for f, fault in zip(
            frames(8, [1, 2, 3, 4, 5, 6], "bad", encoding="rgb8"),
            [{}, {"encoding": "yuv422"}, {"fault": "truncate"}, {"fault": "step_mismatch"},
             {"fault": "zero_size"}, {}])]),
    # good, garbage JPEG, good
    "badjpeg": compressed_stream("/enc/badjpeg/image_raw/compressed", 30, [
        dict(f, **fault) for f, fault in zip(frames(9, [1, 2, 3], "badjpeg", codec="jpeg"),
                                             [{}, {"fault": "garbage"}, {}])]),
}
ENC_INFO = {"topic": "/enc/rgb8/camera_info", "kind": "camera_info", "frame_id": "rgb8_optical",
            "width": W, "height": H, "k": K}
ENC_PARAMS = {
    "cameras": list(ENC_STREAMS),
    **{f"cameras.{c}.transport": "compressed" for c in COMPRESSED},
    "cameras.bgr8.image_topic": "sensors/left",
    "cameras.rgb8.camera_info_topic": "rgb8/camera_info",
    "window.duration_s": 1000.0, "window.max_frames": 100, "window.max_bytes": 10**8,
    "qos.input": "reliable", "qos.input_depth": 100, "diagnostics.period_s": 0.2,
}

# -- node /evict: decimation 2; 1 s, 6 frames, 40000 bytes -----------------------------------
EVICT_STREAMS = {
    "count": raw_stream("/evict/count/image_raw", 50,
                        frames(10, [50 * i for i in range(30)], "count", 24, 32, encoding="rgb8")),
    "dur": raw_stream("/evict/dur/image_raw", 50,
                      frames(11, [400 * i for i in range(10)], "dur", 24, 32, encoding="rgb8")),
    "bytes": raw_stream("/evict/bytes/image_raw", 50,
                        frames(12, [50 * i for i in range(12)], "bytes", 64, 64, encoding="rgb8")),
}
EVICT_PARAMS = {
    "cameras": list(EVICT_STREAMS),
    "window.duration_s": 1.0, "window.max_frames": 6, "window.max_bytes": 40000, "window.decimation": 2,
    "qos.input": "reliable", "qos.input_depth": 100, "diagnostics.period_s": 0.2,
}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Both nodes and the client up, the publisher run to completion, every frame received."""
    client = RosClient("ingest_test_client")
    hosts = {"enc": NodeHost("/enc", ENC_PARAMS), "evict": NodeHost("/evict", EVICT_PARAMS)}
    plan = tmp_path_factory.mktemp("plan") / "plan.json"
    plan.write_text(json.dumps({"qos": "reliable", "depth": 200, "streams": [
        ENC_INFO, *ENC_STREAMS.values(), *EVICT_STREAMS.values()]}))
    try:
        for host in hosts.values():
            host.wait_ready()
        publisher = spawn([str(HELPERS / "camera_publisher.py"), str(plan)])
        assert publisher.wait(60) == 0
        for ns, streams in (("enc", ENC_STREAMS), ("evict", EVICT_STREAMS)):
            for cam, stream in streams.items():
                name = f"/{ns}/unipixel: camera {cam}"
                client.wait_for(lambda: client.values(name).get("received") == str(len(stream["frames"])),
                                20, f"{name} to report every frame received")
        yield client, {ns: host.windows() for ns, host in hosts.items()}, hosts
    finally:
        for host in hosts.values():
            host.stop()
        client.close()


def stamps_ms(window) -> list[int]:
    return [(meta["stamp_ns"] - BASE) // MS for meta, _ in window]


@pytest.mark.parametrize("cam", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "jpeg", "png"])
def test_every_encoding_arrives_whole_in_order_and_pixel_exact(session, cam: str) -> None:
    _, windows, _ = session
    window, stream = windows["enc"][cam], ENC_STREAMS[cam]
    sent = stream["frames"]
    assert [m["stamp_ns"] for m, _ in window] == [f["stamp_ns"] for f in sent]
    assert {m["frame_id"] for m, _ in window} == {sent[0]["frame_id"]}
    for (_, image), spec in zip(window, sent):
        rgb = pattern(spec["seed"], H, W)
        expected = (expected_compressed(rgb, spec["codec"]) if stream["kind"] == "compressed"
                    else expected_raw(rgb, spec["encoding"]))
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, expected)


def test_frames_carry_the_latest_camera_info(session) -> None:
    _, windows, _ = session
    assert all(np.array_equal(m["k"], np.reshape(K, (3, 3))) for m, _ in windows["enc"]["rgb8"])
    assert all(m["k"] is None for m, _ in windows["enc"]["jpeg"])


def test_out_of_order_stamps_are_sorted_and_duplicates_dropped(session) -> None:
    client, windows, _ = session
    assert stamps_ms(windows["enc"]["order"]) == [10, 20, 30, 40, 50]
    values = client.values("/enc/unipixel: camera order")
    assert values["dropped.duplicate_stamp"] == "1" and values["stored"] == "5"


def test_bad_input_is_dropped_counted_and_explained(session) -> None:
    client, windows, hosts = session
    assert hosts["enc"].proc.poll() is None                       # still running
    assert stamps_ms(windows["enc"]["bad"]) == [1, 6]
    assert stamps_ms(windows["enc"]["badjpeg"]) == [1, 3]
    bad = client.values("/enc/unipixel: camera bad")
    assert (bad["dropped.unsupported_encoding"], bad["dropped.size_mismatch"],
            bad["dropped.empty_image"], bad["dropped"]) == ("1", "2", "1", "4")
    assert bad["last_drop"] == "empty_image: image is 0x0 pixels"
    badjpeg = client.values("/enc/unipixel: camera badjpeg")
    assert badjpeg["dropped.corrupt_payload"] == "1"
    assert badjpeg["last_drop"].startswith("corrupt_payload: JPEG payload")
    log = hosts["enc"].log()
    assert "camera 'bad': dropped a frame, unsupported_encoding: encoding 'yuv422'" in log
    assert "camera 'badjpeg': dropped a frame, corrupt_payload" in log


def test_diagnostics_report_rates_and_fill(session) -> None:
    client, _, _ = session
    rgb8 = client.values("/enc/unipixel: camera rgb8")
    assert rgb8["window_rate_hz"] == "20.000"                      # 10 frames stamped 50 ms apart
    assert rgb8["frames_held"] == "10" and rgb8["bytes_held"] == str(10 * H * W * 3)
    assert rgb8["topic"] == "/enc/rgb8/image_raw"
    assert rgb8["camera_info"] == f"{W}x{H}, 1 received"
    assert client.values("/enc/unipixel: camera jpeg")["window_rate_hz"] == "10.000"
    assert client.values("/enc/unipixel: camera bgr8")["topic"] == "/enc/sensors/left"
    node = client.values("/enc/unipixel: node")
    assert node["converter"] == "builtin" or node["converter"] == "cv_bridge"


def test_decimation_and_count_bound(session) -> None:
    client, windows, _ = session
    kept = [i for i in range(30) if i % 2 == 0][-6:]                  # decimation 2, then 6 frames
    assert stamps_ms(windows["evict"]["count"]) == [50 * i for i in kept]
    for (meta, image), i in zip(windows["evict"]["count"], kept):
        np.testing.assert_array_equal(image, pattern(1000 + i, 24, 32))
    values = client.values("/evict/unipixel: camera count")
    assert (values["decimated"], values["stored"], values["evicted"]) == ("15", "15", "9")
    assert values["fill_frames"] == "1.000"


def test_duration_bound(session) -> None:
    _, windows, _ = session
    admitted = [400 * i for i in range(10) if i % 2 == 0]             # 0, 800, ..., 3200 ms
    assert stamps_ms(windows["evict"]["dur"]) == [s for s in admitted if s >= admitted[-1] - 1000]


def test_byte_bound(session) -> None:
    client, windows, _ = session
    per_frame = 64 * 64 * 3
    admitted = [50 * i for i in range(12) if i % 2 == 0]
    assert stamps_ms(windows["evict"]["bytes"]) == admitted[-(40000 // per_frame):]
    assert client.values("/evict/unipixel: camera bytes")["bytes_held"] == str(3 * per_frame)
