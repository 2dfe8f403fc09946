"""Depth images held beside the colour frames: pairing lookups and the shared bounds."""
from __future__ import annotations

import numpy as np

from unipixel_ros.frames import Admission, DepthImage, Frame, FrameWindow, WindowLimits

MS = 1_000_000


def colour(stamp_ms: int, size: int = 4) -> Frame:
    return Frame(np.zeros((size, size, 3), np.uint8), stamp_ms * MS, "cam")


def depth(stamp_ms: int, size: int = 4) -> DepthImage:
    return DepthImage(np.full((size, size), 1.0, np.float32), stamp_ms * MS, "cam")


def test_nearest_depth_and_its_distance() -> None:
    window = FrameWindow(WindowLimits(10.0, 10, 10**6))
    assert window.depth_near(0) == (None, None)
    for ms in (100, 133, 166):
        assert window.insert_depth(depth(ms)) is Admission.STORED
    found, dist = window.depth_near(140 * MS)
    assert found.stamp_ns == 133 * MS and dist == 7 * MS
    assert window.insert_depth(depth(133)) is Admission.DUPLICATE_STAMP


def test_depth_bytes_count_toward_the_byte_bound() -> None:
    frame_bytes, depth_bytes = 4 * 4 * 3, 4 * 4 * 4
    window = FrameWindow(WindowLimits(10.0, 10, 2 * frame_bytes + 2 * depth_bytes))
    for ms in (0, 10, 20):
        window.add(colour(ms))
        window.insert_depth(depth(ms + 1))
    stats = window.stats()
    assert stats.bytes <= 2 * frame_bytes + 2 * depth_bytes
    assert stats.frames == 2 and stats.depth_frames == 2          # the oldest of each left
    assert [f.stamp_ns for f in window.snapshot()] == [10 * MS, 20 * MS]
    assert window.depth_near(0)[0].stamp_ns == 11 * MS


def test_depth_follows_the_duration_and_count_bounds() -> None:
    window = FrameWindow(WindowLimits(1.0, 3, 10**6))
    for ms in (0, 500, 900, 1400):
        window.insert_depth(depth(ms))
    assert window.depth_near(0)[0].stamp_ns == 500 * MS          # 0 is more than 1 s behind 1400
    for ms in (1500, 1600):
        window.insert_depth(depth(ms))
    assert window.stats().depth_frames == 3


def test_depth_of_the_new_timeline_survives_a_colour_restart() -> None:
    window = FrameWindow(WindowLimits(1.0, 10, 10**6))
    window.add(colour(5000))
    window.insert_depth(depth(5000))
    window.insert_depth(depth(10))             # depth restarted first: its old images go
    assert window.stats().depth_frames == 1
    window.add(colour(12))                     # then the colour stream restarts too
    assert window.epoch == 1
    assert window.depth_near(12 * MS)[0].stamp_ns == 10 * MS
