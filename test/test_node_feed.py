"""One camera feed without DDS: what each message does to the window, the counters,
the throttled warnings and the diagnostics status built from them."""
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from unipixel_ros.frames import WindowLimits
from unipixel_ros.ros.conversions import BuiltinConverter
from unipixel_ros.ros.diagnostics import CameraDiagnostics
from unipixel_ros.ros.ingest import WARN_PERIOD_S, CameraFeed
from unipixel_ros.ros.params import CameraConfig


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, line: str) -> None:
        self.lines.append(line)


def image(stamp_s: int, encoding: str = "rgb8", h: int = 2, w: int = 3) -> Image:
    msg = Image(height=h, width=w, encoding=encoding, step=w * 3)
    msg.data = np.full(h * w * 3, stamp_s % 256, np.uint8).tobytes()
    msg.header.stamp.sec = stamp_s
    msg.header.frame_id = "cam_optical"
    return msg


def make_feed(transport: str = "raw", decimation: int = 1, info_topic: str = ""):
    clock, log = Clock(), Log()
    config = CameraConfig("cam", "cam/image_raw", transport, info_topic)
    feed = CameraFeed(config, WindowLimits(100.0, 3, 10**6, decimation), BuiltinConverter(), log, clock)
    return feed, clock, log


def test_messages_go_to_the_window_with_stamp_frame_id_and_camera_info() -> None:
    feed, _, _ = make_feed(info_topic="cam/camera_info")
    info = CameraInfo(width=3, height=2)
    info.k = [1.0, 0, 1, 0, 1.0, 1, 0, 0, 1]
    feed.on_camera_info(info)
    for s in (1, 2, 3, 4):
        assert feed.on_image(image(s)) == "stored"
    frames = feed.window.snapshot()
    assert [f.stamp_ns for f in frames] == [2 * 10**9, 3 * 10**9, 4 * 10**9]
    assert {f.frame_id for f in frames} == {"cam_optical"}
    assert all(f.camera_info.width == 3 for f in frames)
    np.testing.assert_array_equal(frames[-1].image, np.full((2, 3, 3), 4, np.uint8))
    c = feed.counters()
    assert (c.received, c.stored, c.camera_infos, c.dropped_total) == (4, 4, 1, 0)


def test_every_lost_frame_is_counted_under_its_reason() -> None:
    feed, _, _ = make_feed(decimation=2)
    outcomes = [feed.on_image(m) for m in (
        image(1), image(2), image(1),                          # stored, decimated, duplicate
        image(3, encoding="yuv422"),                           # counts toward decimation, then dropped
        image(4), image(5, h=0),                               # decimated; empty (admitted 5th)
    )]
    assert outcomes == ["stored", "decimated", "duplicate_stamp", "unsupported_encoding",
                        "decimated", "empty_image"]
    c = feed.counters()
    assert c.dropped == {"duplicate_stamp": 1, "unsupported_encoding": 1, "empty_image": 1}
    assert (c.received, c.stored, c.decimated) == (6, 1, 2)
    assert c.last_drop == "empty_image: image is 3x0 pixels"


def test_compressed_feed_decodes_and_survives_garbage() -> None:
    feed, _, _ = make_feed(transport="compressed")
    msg = CompressedImage(format="jpeg")
    msg.data = b"\xff\xd8\xff" + bytes(100)
    msg.header.stamp.sec = 1
    assert feed.on_image(msg) == "corrupt_payload"
    assert feed.window.snapshot() == ()


def test_warnings_are_throttled_per_reason() -> None:
    feed, clock, log = make_feed()
    for s in range(1, 4):
        feed.on_image(image(s, encoding="yuv422"))
    feed.on_image(image(10, h=0))
    assert len(log.lines) == 2
    assert log.lines[0].startswith("camera 'cam': dropped a frame, unsupported_encoding: encoding 'yuv422'")
    assert "empty_image" in log.lines[1]
    clock.t += WARN_PERIOD_S
    feed.on_image(image(20, encoding="yuv422"))
    assert log.lines[-1].endswith("(2 more since the last report)")


def test_a_converter_fault_is_a_drop_not_a_crash() -> None:
    class Broken:
        name = "broken"

        def raw(self, msg):
            raise RuntimeError("boom")

    feed = CameraFeed(CameraConfig("cam", "t", "raw", ""), WindowLimits(1.0, 1, 100), Broken(), Log())
    assert feed.on_image(image(1)) == "conversion_failure"
    assert feed.counters().last_drop == "conversion_failure: RuntimeError: boom"


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_status_rates_levels_and_reasons() -> None:
    feed, clock, _ = make_feed()
    diag = CameraDiagnostics("/ns/unipixel", feed, "/ns/cam/image_raw", clock)
    status = diag.status(active=True)
    assert status.level == DiagnosticStatus.WARN and status.message == "no frames received on /ns/cam/image_raw"
    assert status.name == "/ns/unipixel: camera cam"

    for s in range(1, 5):                                   # 4 frames, 1 s of stamps apart
        feed.on_image(image(s))
    clock.t += 2.0
    status = diag.status(active=True)
    v = values(status)
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "cam_optical"
    assert (v["rate_hz"], v["stored_rate_hz"], v["window_rate_hz"]) == ("2.000", "2.000", "1.000")
    assert (v["frames_held"], v["bytes_held"], v["fill_frames"], v["evicted"]) == ("3", "54", "1.000", "1")
    assert v["span_s"] == "2.000" and v["fill_duration"] == "0.020"

    feed.on_image(image(9, encoding="16UC1"))
    clock.t += 1.0
    status = diag.status(active=True)
    assert status.level == DiagnosticStatus.WARN
    assert status.message.startswith("dropped 1 frames in the last 1.0 s; last: unsupported_encoding")
    assert values(status)["dropped.unsupported_encoding"] == "1"

    assert diag.status(active=False).message == "inactive"


@pytest.mark.parametrize("info_topic, expected", [("", "not subscribed"), ("cam/info", "none received")])
def test_status_tells_whether_calibration_arrived(info_topic: str, expected: str) -> None:
    feed, clock, _ = make_feed(info_topic=info_topic)
    assert values(CameraDiagnostics("/n", feed, "/t", clock).status(True))["camera_info"] == expected


def test_status_counts_a_frame_held_for_a_stamp_leap_and_the_outlier_it_turned_out_to_be() -> None:
    feed, clock, _ = make_feed()
    diag = CameraDiagnostics("/ns/unipixel", feed, "/ns/cam/image_raw", clock)
    for s in (1, 2, 3):
        feed.on_image(image(s))
    assert feed.on_image(image(3600 + 3)) == "held_stamp_jump"    # one frame an hour ahead
    assert feed.on_image(image(4)) == "stored"                     # the next one continues the old stamps
    v = values(diag.status(active=True))
    assert (v["received"], v["stored"], v["held_stamp_jump"], v["stamp_outliers"]) == ("5", "4", "1", "1")
    assert [f.stamp_ns // 10**9 for f in feed.window.snapshot()] == [2, 3, 4]
