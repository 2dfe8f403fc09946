"""Window selection, prompt stamp matching and prompt/result message conversion (no ROS graph)."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from unipixel_ros.frames import Frame, FrameWindow, WindowLimits
from unipixel_ros.msg import VisualPrompt as PromptMsg
from unipixel_ros.prompts import BoxPrompt, MaskPrompt, MemoryPrompt, PointPrompt, PromptError
from unipixel_ros.ros.messages import mask_from_msg, mask_msg, object_masks_msg, prompt_from_msg
from unipixel_ros.ros.query_server import RequestError, match_frame, resolve_prompts, select_frames

MS = 1_000_000


def window_with(stamps_ms: list[int], sizes: list[tuple[int, int]] | None = None) -> FrameWindow:
    window = FrameWindow(WindowLimits(duration_s=100.0, max_frames=100, max_bytes=10**9))
    for i, stamp in enumerate(stamps_ms):
        h, w = sizes[i] if sizes else (4, 6)
        window.add(Frame(np.full((h, w, 3), i, np.uint8), stamp * MS, "cam"))
    return window


def stamps_of(frames) -> list[int]:
    return [f.stamp_ns // MS for f in frames]


def test_window_by_seconds_then_count() -> None:
    window = window_with([0, 100, 200, 300, 400, 500])
    assert stamps_of(select_frames(window, 0.25, 10)) == [300, 400, 500]
    assert stamps_of(select_frames(window, 10.0, 2)) == [400, 500]
    assert stamps_of(select_frames(window, 0.2, 10)) == [300, 400, 500]     # the bound is inclusive


def test_window_keeps_only_frames_of_the_newest_size() -> None:
    window = window_with([0, 100, 200], sizes=[(4, 6), (8, 6), (4, 6)])
    assert stamps_of(select_frames(window, 10.0, 10)) == [0, 200]


def test_window_refuses_stale_frames_and_bad_bounds() -> None:
    window = window_with([1000])
    with pytest.raises(RequestError, match="the newest frame is 4.0 s old, older than query.max_frame_age_s = 2 s"):
        select_frames(window, 1.0, 4, now_ns=5000 * MS, max_age_s=2.0)
    assert stamps_of(select_frames(window, 1.0, 4, now_ns=5000 * MS, max_age_s=0.0)) == [1000]
    with pytest.raises(RequestError, match="window_seconds must be a finite number > 0"):
        select_frames(window, float("nan"), 4)
    with pytest.raises(RequestError, match="max_frames must be >= 1"):
        select_frames(window, 1.0, 0)
    with pytest.raises(RequestError, match="no frames yet"):
        select_frames(window_with([]), 1.0, 4)


@pytest.mark.parametrize("stamp, tolerance, expected", [
    (200, 0, 2), (230, 30, 2), (231, 30, None), (250, 50, 2), (-20, 20, 0), (520, 20, 5), (150, 10, None),
])
def test_prompt_stamps_match_the_nearest_frame_within_tolerance(stamp, tolerance, expected) -> None:
    stamps = [0, 100, 200, 300, 400, 500]
    assert match_frame(stamps, stamp, tolerance) == expected


def prompt_msg(kind: int, k: int = 0, stamp_ms: int = 0, **fields) -> PromptMsg:
    msg = PromptMsg(type=kind, object_index=k, **fields)
    msg.stamp.sec, msg.stamp.nanosec = divmod(stamp_ms * MS, 1_000_000_000)
    return msg


def test_prompts_land_on_their_frames_and_memory_ids_are_translated() -> None:
    stamps = [100 * MS, 200 * MS, 300 * MS]
    msgs = [prompt_msg(PromptMsg.POINT, 0, 205, x0=1.5, y0=2.5),
            prompt_msg(PromptMsg.BOX, 1, 0, x0=1.0, y0=2.0, x1=3.0, y1=4.0),
            prompt_msg(PromptMsg.MEMORY, 2, memory_id=17)]
    prompts = resolve_prompts(msgs, stamps, 10 * MS, memory_id=lambda i: i - 10)
    assert prompts == [PointPrompt(object_index=0, frame_index=1, x=1.5, y=2.5),
                       BoxPrompt(object_index=1, frame_index=2, x0=1.0, y0=2.0, x1=3.0, y1=4.0),
                       MemoryPrompt(object_index=2, memory_id=7)]


def test_a_prompt_stamp_outside_the_window_is_named() -> None:
    with pytest.raises(RequestError, match=r"prompt for \[3\]: its stamp 0.500 s matches none of the 2 frames used "
                                           r"\(0.100 s to 0.200 s\) within query.prompt_stamp_tolerance_s = 0.01 s"):
        resolve_prompts([prompt_msg(PromptMsg.POINT, 3, 500)], [100 * MS, 200 * MS], 10 * MS, lambda i: i)


def test_mask_prompts_and_negative_points_convert() -> None:
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    msg = prompt_msg(PromptMsg.MASK, 0, mask=mask_msg(mask, 0, "cam"))
    converted = prompt_from_msg(msg, 1)
    assert isinstance(converted, MaskPrompt) and converted.frame_index == 1
    assert np.array_equal(converted.mask, mask)
    negative = prompt_from_msg(prompt_msg(PromptMsg.POINT, negative=True), 0)
    assert negative == PointPrompt(object_index=0, frame_index=0, x=0.0, y=0.0, positive=False)
    with pytest.raises(PromptError, match=r"prompt for \[0\]: unknown type 9"):
        prompt_from_msg(prompt_msg(9), 0)


def test_mask_images_with_padded_rows_and_bad_encodings() -> None:
    msg = Image(height=2, width=3, encoding="mono8", step=4)
    msg.data = bytes([0, 255, 0, 7, 9, 0, 1, 7])
    assert np.array_equal(mask_from_msg(msg), [[False, True, False], [True, False, True]])
    msg.encoding = "rgb8"
    with pytest.raises(PromptError, match="mask image encoding 'rgb8' is not supported"):
        mask_from_msg(msg)


def test_object_masks_carry_each_frames_stamp_frame_id_and_tight_box() -> None:
    a = np.zeros((5, 6), bool)
    a[1:3, 2:5] = True
    empty = np.zeros((5, 6), bool)
    msg = object_masks_msg(4, "cup", 0.5, False, [(1_500_000_000, "cam_a", a), (2_000_000_001, "cam_b", empty)])
    assert (msg.id, msg.label, msg.header.frame_id) == (4, "cup", "cam_b")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (2, 1)
    assert [(s.sec, s.nanosec) for s in msg.stamps] == [(1, 500_000_000), (2, 1)]
    assert [m.header.frame_id for m in msg.masks] == ["cam_a", "cam_b"]
    assert bytes(msg.masks[0].data) == np.where(a, 255, 0).astype(np.uint8).tobytes()
    assert (msg.boxes[0].x_offset, msg.boxes[0].y_offset, msg.boxes[0].width, msg.boxes[0].height) == (2, 1, 3, 2)
    assert (msg.boxes[1].width, msg.boxes[1].height) == (0, 0)
