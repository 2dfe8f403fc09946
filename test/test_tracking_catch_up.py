"""Objects left behind by a long request are tracked through the frames they missed.

A query's objects end at the query's frames; by the time it returns (seconds later, on a
first query that waited for the model) the camera has moved on, and SAM 2 stepped straight
onto the newest frame loses a shape that moved far. The first tracking step after requests
held the model steps the objects behind through the held frames in between (spaced at the tracking rate, at most ``tracking.catch_up_frames``), then onto the
newest; a model that is only slower than the rate does not. ROS-free apart from the
message types; a recording pipeline double, about 2 s.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image

from test_lazy_frames import bogus_huffman, jpeg
from test_lazy_frames import message as jpeg_message
from unipixel_ros.frames import Frame, WindowLimits
from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.object_store import ObjectStore
from unipixel_ros.results import TrackedMask
from unipixel_ros.ros.conversions import BuiltinConverter
from unipixel_ros.ros.ingest import CameraFeed
from unipixel_ros.ros.model_host import ModelHost, ModelSettings
from unipixel_ros.ros.params import CameraConfig
from unipixel_ros.ros.tracking import CatchUp, TrackingCore
from unipixel_ros.tracking_schedule import StepOutcome

H, W = 6, 8
S = 1_000_000_000
LOG = logging.getLogger("test_tracking_catch_up")


class RecordingPipeline:
    """Steps each object behind the frame (the pipeline's rule), recording the stamps;
    ``during_step`` runs in every step (a camera that goes on publishing)."""

    def __init__(self) -> None:
        self.stamps: list[tuple[int, list[int]]] = []
        self.during_step = lambda: None

    def track(self, memory: ObjectMemoryBank, frame: np.ndarray, stamp: int) -> dict[int, TrackedMask]:
        self.during_step()
        moved = memory.tracked_before(stamp)
        mask = np.ones((H, W), bool)
        for object_id in moved:
            memory.add_frame(object_id, stamp, mask, 0.9)
        self.stamps.append((stamp, sorted(moved)))
        return {object_id: TrackedMask(mask=mask, score=0.9, visible=True) for object_id in moved}


def held(stamps: list[int]) -> list[Frame]:
    return [Frame(np.zeros((H, W, 3), np.uint8), s, "cam") for s in stamps]


def test_frames_are_the_newest_ones_spaced_at_the_rate_after_the_oldest_object() -> None:
    frames = held([s * S // 10 for s in range(10, 51)])              # 10 Hz from 1.0 s to 5.0 s
    pick = CatchUp(max_frames=25, rate_hz=5.0).frames(frames, {1: 3 * S, 2: 4 * S}, 5 * S)
    assert [f.stamp_ns for f in pick] == [s * S // 10 for s in range(32, 50, 2)]   # 3.2 .. 4.8 s
    few = CatchUp(max_frames=3, rate_hz=5.0).frames(frames, {1: 1 * S}, 5 * S)
    assert [f.stamp_ns for f in few] == [44 * S // 10, 46 * S // 10, 48 * S // 10]
    every = CatchUp(max_frames=100, rate_hz=0.0).frames(frames, {1: 45 * S // 10}, 5 * S)
    assert [f.stamp_ns for f in every] == [s * S // 10 for s in range(46, 50)]


@pytest.mark.parametrize("newest", [{}, {1: 5 * S}, {1: None}, {1: 6 * S}])
def test_nothing_to_catch_up_when_no_object_is_behind(newest: dict) -> None:
    frames = held([s * S // 10 for s in range(10, 51)])
    assert CatchUp(max_frames=25, rate_hz=5.0).frames(frames, newest, 5 * S) == []
    assert CatchUp(max_frames=0, rate_hz=5.0).frames(frames, {1: S}, 5 * S) == []


def test_only_objects_behind_a_frame_are_stepped_onto_it() -> None:
    bank = ObjectMemoryBank()
    mask = np.ones((H, W), bool)
    behind, ahead, bare, untracked = (bank.add(n, [(s, mask, 1.0)] if s else []) for n, s in
                                      (("behind", 10), ("ahead", 30), ("bare", 0), ("untracked", 10)))
    for object_id in (behind, ahead, bare):
        bank.attach_tracking(object_id, f"state {object_id}")
    assert bank.tracked_before(20) == {behind: f"state {behind}", bare: f"state {bare}"}
    assert bank.tracked_before(30) == {behind: f"state {behind}", bare: f"state {bare}"}
    assert bank.newest_tracked() == {behind: 10, ahead: 30, bare: None}


def rig(max_frames: int = 25, transport: str = "raw"):
    feed = CameraFeed(CameraConfig("cam", "cam/image_raw", transport, ""), WindowLimits(100.0, 64, 10**8),
                      BuiltinConverter(), LOG)
    pipeline = RecordingPipeline()
    host = ModelHost(ModelSettings("fake", "cpu", "float32", "torch"), "reject", 0, LOG,
                     lambda settings, log: pipeline)
    host.start_loading()
    assert host.wait_ready(30)
    store = ObjectStore({"cam": feed}, 4, 64, timelines={"cam": feed.window})
    core = TrackingCore({"cam": feed}, store, host, LOG, catch_up=CatchUp(max_frames, rate_hz=5.0))
    core.emit = lambda outputs: None
    return feed, pipeline, host, store, core


def stream(feed: CameraFeed, tenths: range) -> None:
    for t in tenths:
        msg = Image(height=H, width=W, encoding="rgb8", step=W * 3)
        msg.data = bytes(H * W * 3)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t * S // 10, S)
        msg.header.frame_id = "cam"
        assert feed.on_image(msg) == "stored"


def frame_every_second_step(feed: CameraFeed):
    """A camera that goes on at 10 Hz while tracking steps every 50 ms: frames from 2.1 s on."""
    calls = []

    def camera_goes_on() -> None:
        calls.append(None)
        if len(calls) % 2 == 0:
            stream(feed, range(20 + len(calls) // 2, 21 + len(calls) // 2))
    return camera_goes_on


def remember(host: ModelHost, store: ObjectStore, stamp_ns: int) -> int:
    """An object as a request (holding the model) leaves it: masks up to its newest frame,
    a tracker state."""
    with host.exclusive("query"):
        bank = store.bank("cam")
        bank_id = bank.add("query", [(stamp_ns, np.ones((H, W), bool), 0.9)])
        bank.attach_tracking(bank_id, "sam2 state")
    return store.adopt("cam", bank_id)


def test_a_query_object_is_tracked_through_the_frames_it_missed_then_onto_the_newest() -> None:
    feed, pipeline, host, store, core = rig()
    try:
        stream(feed, range(10, 21))                   # 1.0 .. 2.0 s at 10 Hz
        object_id = remember(host, store, 12 * S // 10)     # its query's frames ended at 1.2 s
        core.publish_stored("cam", 12 * S // 10)
        assert core.step("cam") is StepOutcome.STEPPED
        assert [s for s, _ in pipeline.stamps] == [s * S // 10 for s in (14, 16, 18, 20)]
        assert store.get(object_id).last_seen_ns == 2 * S and not store.get(object_id).lost
        assert core.cameras["cam"].caught_up == 3

        stream(feed, range(21, 26))                   # a slow model: 0.5 s since its last step
        pipeline.stamps.clear()
        assert core.step("cam") is StepOutcome.STEPPED
        assert [s for s, _ in pipeline.stamps] == [25 * S // 10]   # no catching up on its own lag
    finally:
        host.unload()


def test_frames_that_arrive_while_catching_up_are_caught_up_with_too() -> None:
    """Catching up takes time, and the camera goes on: the step ends on a frame that came
    meanwhile, not on the one it started for (which would leave a new gap behind it)."""
    feed, pipeline, host, store, core = rig()
    pipeline.during_step = frame_every_second_step(feed)
    try:
        stream(feed, range(10, 21))
        remember(host, store, 10 * S // 10)
        assert core.step("cam") is StepOutcome.STEPPED
        stepped = [s for s, _ in pipeline.stamps]
        assert stepped == sorted(set(stepped)) and stepped[0] == 12 * S // 10
        assert all(b - a >= 15 * S // 100 for a, b in zip(stepped, stepped[1:]))    # spaced at 5 Hz
        assert stepped[-1] > 2 * S                                   # beyond the newest when it began
        assert feed.window.latest().stamp_ns - stepped[-1] < S // 5  # within one period of the newest at the end
        assert core.cameras["cam"].last_stamp == stepped[-1]          # and published there
    finally:
        host.unload()


def test_catch_up_frames_bounds_how_far_back_not_the_frames_that_come_meanwhile() -> None:
    """A budget spent on the way back would end in a jump over what came meanwhile."""
    feed, pipeline, host, store, core = rig(max_frames=4)
    pipeline.during_step = frame_every_second_step(feed)
    try:
        stream(feed, range(10, 21))
        remember(host, store, 10 * S // 10)
        assert core.step("cam") is StepOutcome.STEPPED
        stepped = [s for s, _ in pipeline.stamps]
        assert stepped[:4] == [s * S // 10 for s in (12, 14, 16, 18)]   # the newest 4 of the way back
        assert stepped[4:] == [20 * S // 10, 22 * S // 10]               # then what came meanwhile
    finally:
        host.unload()


def test_a_model_too_slow_to_close_the_gap_stops_after_its_first_round() -> None:
    """Two new frames (a tracking period) per step: chasing them would never end within the
    budget, so the step ends on the frame it began for and the steps at the rate go on."""
    feed, pipeline, host, store, core = rig()
    arrived = [20]

    def two_frames_per_step() -> None:
        stream(feed, range(arrived[0] + 1, arrived[0] + 3))
        arrived[0] += 2
    pipeline.during_step = two_frames_per_step
    try:
        stream(feed, range(10, 21))
        remember(host, store, 10 * S // 10)
        assert core.step("cam") is StepOutcome.STEPPED
        assert [s for s, _ in pipeline.stamps] == [s * S // 10 for s in (12, 14, 16, 18, 20)]
        pipeline.stamps.clear()
        assert core.step("cam") is StepOutcome.STEPPED              # no request since: straight to the newest
        assert [s for s, _ in pipeline.stamps] == [feed.window.latest().stamp_ns - 2 * S // 10]
    finally:
        host.unload()


def test_catching_up_gives_way_to_a_request_and_goes_on_after_it() -> None:
    """A request that comes while catching up waits only for the frame being stepped; the
    step publishes that frame, and the step after the request goes on from there."""
    feed, pipeline, host, store, core = rig()
    requests: list[threading.Thread] = []

    def a_query_comes() -> None:
        if len(pipeline.stamps) == 1 and not requests:
            requests.append(threading.Thread(target=hold_briefly, args=(host,)))
            requests[0].start()
            wait_until(lambda: host.requests_waiting)
    pipeline.during_step = a_query_comes
    try:
        stream(feed, range(10, 21))
        remember(host, store, 10 * S // 10)
        assert core.step("cam") is StepOutcome.STEPPED
        assert [s for s, _ in pipeline.stamps] == [12 * S // 10, 14 * S // 10]
        assert core.cameras["cam"].last_stamp == 14 * S // 10          # published where it stopped
        requests[0].join(10)
        pipeline.stamps.clear()
        assert core.step("cam") is StepOutcome.STEPPED
        assert [s for s, _ in pipeline.stamps] == [s * S // 10 for s in (16, 18, 20)]
    finally:
        host.unload()


def hold_briefly(host: ModelHost) -> None:
    with host.exclusive("query"):
        pass


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_corrupt_frame_arriving_while_catching_up_is_not_stepped_onto() -> None:
    """The newest frame after catching up does not decode: the step ends on the one before it."""
    feed, pipeline, host, store, core = rig(transport="compressed")
    sent = []

    def corrupt_frame_arrives() -> None:
        if not sent:
            sent.append(feed.on_image(jpeg_message(11, bogus_huffman(jpeg(11)))))
    pipeline.during_step = corrupt_frame_arrives
    try:
        for second in range(1, 11):
            assert feed.on_image(jpeg_message(second, jpeg(second))) == "stored"
        remember(host, store, 2 * S)
        assert core.step("cam") is StepOutcome.STEPPED
        assert sent == ["stored"]                                   # its header is fine; its data is not
        assert [s for s, _ in pipeline.stamps] == [second * S for second in range(3, 11)]
        assert core.cameras["cam"].last_stamp == 10 * S
    finally:
        host.unload()


def test_an_object_clicked_on_the_newest_frame_is_not_stepped_back_while_others_catch_up() -> None:
    feed, pipeline, host, store, core = rig()
    try:
        stream(feed, range(10, 21))
        old = remember(host, store, 12 * S // 10)
        clicked = remember(host, store, 2 * S)              # a click on the newest frame
        core.publish_stored("cam", 2 * S)
        stream(feed, range(21, 22))
        assert core.step("cam") is StepOutcome.STEPPED
        steps = dict(pipeline.stamps)
        old_bank, clicked_bank = store.bank_id("cam", old), store.bank_id("cam", clicked)
        assert [s for s, _ in pipeline.stamps] == [s * S // 10 for s in (15, 17, 19, 21)]   # 1.3 s: too close to 1.2
        assert steps[15 * S // 10] == [old_bank] and steps[19 * S // 10] == [old_bank]   # 2.0 s: ahead
        assert steps[21 * S // 10] == sorted([old_bank, clicked_bank])
        assert not store.get(clicked).lost and store.get(clicked).last_seen_ns == 21 * S // 10
    finally:
        host.unload()


def test_objects_behind_without_a_request_do_not_catch_up() -> None:
    """An object kept without the model (or a model only slower than the rate) steps onto the newest."""
    feed, pipeline, host, store, core = rig()
    try:
        stream(feed, range(10, 21))
        bank = store.bank("cam")
        bank_id = bank.add("kept", [(12 * S // 10, np.ones((H, W), bool), 0.9)])
        bank.attach_tracking(bank_id, "sam2 state")
        store.adopt("cam", bank_id)
        assert core.step("cam") is StepOutcome.STEPPED
        assert [s for s, _ in pipeline.stamps] == [2 * S]
    finally:
        host.unload()


def test_catching_up_off_jumps_straight_to_the_newest_frame() -> None:
    feed, pipeline, host, store, core = rig(max_frames=0)
    try:
        stream(feed, range(10, 21))
        remember(host, store, 12 * S // 10)
        core.publish_stored("cam", 12 * S // 10)
        assert core.step("cam") is StepOutcome.STEPPED
        assert [s for s, _ in pipeline.stamps] == [2 * S]
    finally:
        host.unload()
