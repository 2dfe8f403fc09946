"""FrameWindow: exact eviction, decimation, ordering, selection and thread safety."""
import threading

import numpy as np
import pytest

from unipixel_ros.frames import (
    NS_PER_S,
    Admission,
    CameraIntrinsics,
    Frame,
    FrameError,
    FrameWindow,
    WindowLimits,
    WindowLimitsError,
    WindowQueryError,
)

MS = 1_000_000


def frame(stamp_ns: int, h: int = 2, w: int = 3, frame_id: str = "cam") -> Frame:
    return Frame(np.full((h, w, 3), stamp_ns % 251, np.uint8), stamp_ns, frame_id)


def window(duration_s: float = 100.0, max_frames: int = 1000, max_bytes: int = 10**9,
           decimation: int = 1) -> FrameWindow:
    return FrameWindow(WindowLimits(duration_s, max_frames, max_bytes, decimation))


def stamps(w: FrameWindow) -> list[int]:
    return [f.stamp_ns for f in w.snapshot()]


def test_count_bound_keeps_newest_frames() -> None:
    w = window(max_frames=4)
    for i in range(10):
        assert w.add(frame(i * MS)) is Admission.STORED
    assert stamps(w) == [6 * MS, 7 * MS, 8 * MS, 9 * MS]
    assert w.stats().evicted == 6


def test_duration_bound_is_measured_on_stamps_inclusive() -> None:
    w = window(duration_s=0.25)
    for i in range(10):                     # stamps 0, 100 ms, ..., 900 ms
        w.add(frame(i * 100 * MS))
    # newest 900 ms: 650 ms is the cutoff; 700, 800, 900 remain
    assert stamps(w) == [700 * MS, 800 * MS, 900 * MS]
    w2 = window(duration_s=0.2)
    for i in range(10):
        w2.add(frame(i * 100 * MS))
    assert stamps(w2) == [700 * MS, 800 * MS, 900 * MS]   # exactly 0.2 s apart is kept
    assert w2.stats().span_s == pytest.approx(0.2)


def test_byte_bound_counts_image_bytes() -> None:
    one = frame(0, h=4, w=5).nbytes
    assert one == 4 * 5 * 3
    w = window(max_bytes=3 * one + one - 1)
    for i in range(6):
        w.add(frame(i, h=4, w=5))
    st = w.stats()
    assert stamps(w) == [3, 4, 5] and st.bytes == 3 * one
    assert st.fill["bytes"] == pytest.approx(3 * one / (4 * one - 1))


def test_frame_larger_than_byte_bound_is_refused_without_evicting() -> None:
    w = window(max_bytes=100)
    w.add(frame(1, h=2, w=3))
    assert w.add(frame(2, h=10, w=10)) is Admission.TOO_LARGE
    assert stamps(w) == [1]


def test_decimation_keeps_first_and_every_kth_usable_frame() -> None:
    w = window(decimation=3)
    verdicts = [w.add(frame(i)) for i in range(10)]
    assert stamps(w) == [0, 3, 6, 9]
    assert verdicts.count(Admission.DECIMATED) == 6


def test_duplicates_do_not_advance_decimation() -> None:
    w = window(decimation=2)
    seq = [0, 1, 1, 2, 3, 4, 4]
    verdicts = [w.add(frame(s)) for s in seq]
    assert verdicts == [Admission.STORED, Admission.DECIMATED, Admission.DUPLICATE_STAMP,
                        Admission.STORED, Admission.DECIMATED, Admission.STORED,
                        Admission.DUPLICATE_STAMP]
    assert stamps(w) == [0, 2, 4]


def test_out_of_order_frames_are_inserted_in_stamp_order() -> None:
    w = window()
    for s in [10, 30, 20, 40, 5]:
        assert w.add(frame(s)) is Admission.STORED
    assert stamps(w) == [5, 10, 20, 30, 40]
    assert w.add(frame(20)) is Admission.DUPLICATE_STAMP


def test_late_frame_older_than_everything_kept_is_refused_and_window_untouched() -> None:
    w = window(max_frames=3)
    for s in [10, 20, 30]:
        w.add(frame(s))
    assert w.add(frame(5)) is Admission.TOO_OLD
    assert stamps(w) == [10, 20, 30]
    assert w.add(frame(15)) is Admission.STORED       # fits: evicts 10
    assert stamps(w) == [15, 20, 30]
    one = frame(0).nbytes
    wb = window(max_bytes=2 * one)
    wb.add(frame(10))
    wb.add(frame(30))
    # A late frame twice the size: with 30 it would exceed the budget, so it is refused
    # and 10, which the bounds still allow, is not sacrificed for it.
    assert wb.add(frame(20, w=6)) is Admission.TOO_OLD
    assert stamps(wb) == [10, 30]
    assert wb.add(frame(25)) is Admission.STORED       # same size fits: evicts 10
    assert stamps(wb) == [25, 30]


def test_backward_jump_beyond_duration_restarts_the_window() -> None:
    w = window(duration_s=1.0)
    for i in range(5):
        w.add(frame(100 * NS_PER_S + i * 100 * MS))
    assert w.add(frame(3 * NS_PER_S)) is Admission.STORED
    assert stamps(w) == [3 * NS_PER_S]
    assert w.stats().stamp_resets == 1
    assert w.add(frame(3 * NS_PER_S + MS)) is Admission.STORED
    assert stamps(w) == [3 * NS_PER_S, 3 * NS_PER_S + MS]


def test_admit_before_decoding_then_insert() -> None:
    w = window(decimation=2)
    assert w.admit(0) is Admission.STORED
    assert w.admit(1) is Admission.DECIMATED
    assert w.insert(frame(0)) is Admission.STORED
    assert w.admit(0) is Admission.DUPLICATE_STAMP
    assert stamps(w) == [0]


def test_last_frames_and_last_seconds() -> None:
    w = window()
    for i in range(10):
        w.add(frame(i * 100 * MS))
    assert [f.stamp_ns for f in w.last_frames(3)] == [700 * MS, 800 * MS, 900 * MS]
    assert len(w.last_frames(50)) == 10
    assert [f.stamp_ns for f in w.last_seconds(0.3)] == [600 * MS, 700 * MS, 800 * MS, 900 * MS]
    assert [f.stamp_ns for f in w.last_seconds(0.15, until_ns=450 * MS)] == [300 * MS, 400 * MS]
    assert [f.stamp_ns for f in w.last_seconds(0)] == [900 * MS]
    with pytest.raises(WindowQueryError):
        w.last_frames(0)
    with pytest.raises(WindowQueryError):
        w.last_seconds(-1.0)
    assert window().last_seconds(1.0) == ()


def test_nearest_within_tolerance_prefers_older_on_tie() -> None:
    w = window()
    for s in [100, 200, 300]:
        w.add(frame(s))
    assert w.nearest(240, 50).stamp_ns == 200
    assert w.nearest(260, 50).stamp_ns == 300
    assert w.nearest(250, 50).stamp_ns == 200
    assert w.nearest(250, 49) is None
    assert w.nearest(0, 100).stamp_ns == 100
    assert w.nearest(1000, 10) is None
    assert window().nearest(0, 10) is None


def test_frames_are_read_only_and_keep_metadata() -> None:
    info = CameraIntrinsics(3, 2, [[10, 0, 1.5], [0, 11, 1.0], [0, 0, 1]], "plumb_bob", (0.1, 0, 0, 0, 0))
    f = Frame(np.zeros((2, 3, 3), np.uint8), 7, "optical", info)
    w = window()
    w.add(f)
    got = w.latest()
    assert got.frame_id == "optical" and got.stamp_ns == 7 and got.camera_info.k[1, 1] == 11.0
    with pytest.raises(ValueError):
        got.image[0, 0, 0] = 1
    with pytest.raises(ValueError):
        got.camera_info.k[0, 0] = 1


@pytest.mark.parametrize("image", [np.zeros((2, 3), np.uint8), np.zeros((2, 3, 4), np.uint8),
                                   np.zeros((0, 3, 3), np.uint8), np.zeros((2, 3, 3), np.float32),
                                   np.zeros((3, 2, 3), np.uint8).transpose(1, 0, 2)])
def test_frame_rejects_non_rgb8_images(image: np.ndarray) -> None:
    with pytest.raises(FrameError):
        Frame(image, 0, "cam")


@pytest.mark.parametrize("kwargs, field", [
    (dict(duration_s=0.0), "duration_s"), (dict(duration_s=-1.0), "duration_s"),
    (dict(duration_s=float("inf")), "duration_s"), (dict(max_frames=0), "max_frames"),
    (dict(max_bytes=-5), "max_bytes"), (dict(decimation=0), "decimation"),
    (dict(max_frames=2.5), "max_frames"),
])
def test_limits_validation_names_the_field(kwargs: dict, field: str) -> None:
    args = dict(duration_s=1.0, max_frames=1, max_bytes=1, decimation=1) | kwargs
    with pytest.raises(WindowLimitsError) as err:
        WindowLimits(**args)
    assert err.value.field == field and field in str(err.value)


def test_concurrent_writer_and_readers_see_consistent_snapshots() -> None:
    w = window(max_frames=16)
    errors: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            snap = w.snapshot()
            s = [f.stamp_ns for f in snap]
            if s != sorted(s) or len(s) > 16 or len(set(s)) != len(s):
                errors.append(f"bad snapshot {s}")
            st = w.stats()
            if st.frames > 16:
                errors.append("over count bound")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(3000):
        w.add(frame(i))
    done.set()
    for t in readers:
        t.join()
    assert not errors
    assert stamps(w) == list(range(3000 - 16, 3000))


class FakeClock:
    """Arrival time for a window, advanced by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def clocked_window(duration_s: float = 1.0) -> tuple[FrameWindow, FakeClock]:
    clock = FakeClock()
    return FrameWindow(WindowLimits(duration_s, 1000, 10**9), clock=clock), clock


def stream(w: FrameWindow, clock: FakeClock, first_ns: int, count: int, period_ns: int = 100 * MS) -> list[int]:
    """Adds ``count`` frames arriving ``period_ns`` apart; returns their stamps."""
    out = []
    for i in range(count):
        stamp = first_ns + i * period_ns
        assert w.add(frame(stamp)) is Admission.STORED
        out.append(stamp)
        clock.now += period_ns / NS_PER_S
    return out


def test_one_frame_stamped_an_hour_ahead_is_held_then_dropped_and_the_window_keeps_its_frames() -> None:
    w, clock = clocked_window()
    before = stream(w, clock, 100 * NS_PER_S, 5)
    assert w.add(frame(before[-1] + 3600 * NS_PER_S)) is Admission.HELD
    assert stamps(w) == before and w.latest().stamp_ns == before[-1]
    clock.now += 0.1
    after = stream(w, clock, before[-1] + 100 * MS, 3)
    assert stamps(w) == before + after
    stats = w.stats()
    assert (stats.stamp_outliers, stats.stamp_resets, w.epoch) == (1, 0, 0)
    assert w.add(frame(before[-1] + 3600 * NS_PER_S)) is Admission.HELD    # not taken for a duplicate


def test_stamps_that_stay_an_hour_ahead_move_the_window_on_without_a_new_epoch() -> None:
    w, clock = clocked_window()
    before = stream(w, clock, 100 * NS_PER_S, 5)
    jump = before[-1] + 3600 * NS_PER_S
    assert w.add(frame(jump)) is Admission.HELD
    clock.now += 0.1
    assert w.add(frame(jump + 100 * MS)) is Admission.STORED
    assert stamps(w) == [jump, jump + 100 * MS]       # the old frames left by the duration bound
    assert (w.stats().stamp_outliers, w.epoch) == (0, 0)   # stamps still increase: same timeline


def test_a_gap_as_long_in_arrival_time_as_in_stamps_is_not_a_jump() -> None:
    w, clock = clocked_window()
    before = stream(w, clock, 100 * NS_PER_S, 3)
    clock.now += 30.0                                  # the camera was silent for 30 s
    assert w.add(frame(before[-1] + 30 * NS_PER_S)) is Admission.STORED
    assert stamps(w) == [before[-1] + 30 * NS_PER_S]


def test_a_backward_jump_starts_a_new_epoch_read_together_with_the_newest_frame() -> None:
    w, clock = clocked_window()
    assert w.latest_with_epoch() == (0, None)
    stream(w, clock, 100 * NS_PER_S, 3)
    looped = stream(w, clock, 1 * NS_PER_S, 2)
    epoch, newest = w.latest_with_epoch()
    assert (epoch, newest.stamp_ns, w.epoch, w.stats().stamp_resets) == (1, looped[-1], 1, 1)
    assert stamps(w) == looped


def test_clear_forgets_a_held_frame() -> None:
    w, clock = clocked_window()
    stream(w, clock, 100 * NS_PER_S, 2)
    assert w.add(frame(5000 * NS_PER_S)) is Admission.HELD
    w.clear()
    clock.now += 0.1
    assert w.add(frame(5000 * NS_PER_S + 100 * MS)) is Admission.STORED
    assert stamps(w) == [5000 * NS_PER_S + 100 * MS]
