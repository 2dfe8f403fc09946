"""StepScheduler: cameras share one model fairly, at the asked rate when it is fast enough (ROS-free).

A fake clock stands in for time: the model double advances it by its step time, and
the loop below fires the scheduler's tick as an executor fires an overrunning timer
(at once when the previous pass took longer than the tick, else at the next tick).
"""
from __future__ import annotations

import threading

import pytest

from unipixel_ros.ros.model_host import ModelHost, ModelSettings
from unipixel_ros.tracking_schedule import StepOutcome, StepScheduler


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cameras:
    """Cameras publishing every ``frame_period_s`` and one model taking ``step_s`` a step."""

    def __init__(self, clock: Clock, step_s: float, frame_period_s: dict[str, float],
                 busy: tuple[float, float] = (0.0, 0.0)) -> None:
        self.clock = clock
        self.step_s = step_s
        self.frame_period_s = frame_period_s
        self.busy = busy                              # a request holds the model in [start, end)
        self.tracked: dict[str, float] = {name: -1.0 for name in frame_period_s}
        self.steps: dict[str, list[float]] = {name: [] for name in frame_period_s}

    def step(self, camera: str) -> StepOutcome:
        now = self.clock.now
        if self.busy[0] <= now < self.busy[1]:
            return StepOutcome.MODEL_BUSY
        period = self.frame_period_s[camera]
        newest = (now // period) * period
        if newest <= self.tracked[camera]:
            return StepOutcome.NO_NEW_FRAME
        self.tracked[camera] = newest
        self.steps[camera].append(now)
        self.clock.now += self.step_s
        return StepOutcome.STEPPED


def run(scheduler: StepScheduler, cameras: Cameras, seconds: float) -> None:
    clock = cameras.clock
    next_tick = clock.now
    while clock.now < seconds:
        clock.now = max(clock.now, next_tick)
        began = clock.now
        scheduler.run_due(cameras.step)
        next_tick = began + scheduler.tick_s


def test_a_slow_model_is_shared_fairly_between_two_cameras() -> None:
    clock = Clock()
    scheduler = StepScheduler(["front", "rear"], 5.0, clock)
    cameras = Cameras(clock, step_s=0.3, frame_period_s={"front": 0.1, "rear": 0.1})
    run(scheduler, cameras, 60.0)
    front, rear = (len(cameras.steps[c]) for c in ("front", "rear"))
    assert abs(front - rear) <= 1 and front + rear >= 60.0 / 0.3 - 2      # alternating, model never idle
    for camera in ("front", "rear"):
        rate = scheduler.rate(camera)
        assert rate.asked_hz == 5.0 and rate.steps == len(cameras.steps[camera])
        assert rate.achieved_hz == pytest.approx(1 / 0.6, rel=0.05)


def test_a_fast_model_gives_every_camera_the_asked_rate() -> None:
    clock = Clock()
    scheduler = StepScheduler(["front", "rear"], 5.0, clock)
    cameras = Cameras(clock, step_s=0.01, frame_period_s={"front": 0.1, "rear": 0.1})
    run(scheduler, cameras, 30.0)
    for camera in ("front", "rear"):
        assert len(cameras.steps[camera]) == pytest.approx(5.0 * 30.0, abs=2)
        assert scheduler.rate(camera).achieved_hz == pytest.approx(5.0, rel=0.05)


def test_a_camera_slower_than_the_rate_gets_each_frame_and_leaves_the_rest_to_the_others() -> None:
    clock = Clock()
    scheduler = StepScheduler(["fast", "slow"], 5.0, clock)
    cameras = Cameras(clock, step_s=0.3, frame_period_s={"fast": 0.1, "slow": 1.0})
    run(scheduler, cameras, 60.0)
    slow, fast = len(cameras.steps["slow"]), len(cameras.steps["fast"])
    assert slow == pytest.approx(60, abs=2)                     # every frame of the 1 Hz camera
    assert fast + slow >= 60.0 / 0.3 - 2                        # the model is never left idle
    assert scheduler.rate("fast").achieved_hz > 2.0


def test_both_cameras_resume_alike_after_a_request_held_the_model() -> None:
    clock = Clock()
    scheduler = StepScheduler(["front", "rear"], 5.0, clock)
    cameras = Cameras(clock, step_s=0.3, frame_period_s={"front": 0.1, "rear": 0.1}, busy=(10.0, 20.0))
    run(scheduler, cameras, 40.0)
    assert not any(10.0 <= t < 20.0 for c in cameras.steps.values() for t in c)
    after = [sum(t >= 20.0 for t in cameras.steps[c]) for c in ("front", "rear")]
    assert abs(after[0] - after[1]) <= 1 and min(after) >= 30


def test_the_achieved_rate_is_measured_over_the_recent_past() -> None:
    clock = Clock()
    scheduler = StepScheduler(["front"], 5.0, clock, rate_window_s=5.0)
    cameras = Cameras(clock, step_s=0.01, frame_period_s={"front": 0.1})
    run(scheduler, cameras, 10.0)
    assert scheduler.rate("front").achieved_hz == pytest.approx(5.0, rel=0.05)
    cameras.busy = (10.0, 100.0)                               # the model taken for good
    run(scheduler, cameras, 20.0)
    assert scheduler.rate("front").achieved_hz == 0.0


def test_the_rate_must_be_positive_and_cameras_known() -> None:
    with pytest.raises(ValueError, match="tracking.rate_hz"):
        StepScheduler(["front"], 0.0)
    with pytest.raises(KeyError):
        StepScheduler(["front"], 5.0).rate("rear")


def test_model_host_counts_skipped_tracking_steps_per_camera() -> None:
    h = ModelHost(ModelSettings("test-model", "cpu", "auto", "torch"), "queue", 2, _Logger(),
                  lambda settings, log: "pipeline")
    h.start_loading()
    assert h.wait_ready(5)
    release, running = threading.Event(), threading.Event()

    def request() -> None:
        with h.exclusive("query"):
            running.set()
            release.wait(5)
    thread = threading.Thread(target=request)
    thread.start()
    assert running.wait(5)
    for who in ("front", "front", "rear"):
        with h.if_idle(who) as pipeline:
            assert pipeline is None
    release.set()
    thread.join()
    with h.if_idle("rear") as pipeline:
        assert pipeline == "pipeline"
    stats = h.stats()
    assert (stats.tracking_skipped, dict(stats.tracking_skipped_by)) == (3, {"front": 2, "rear": 1})


class _Logger:
    def info(self, msg: str) -> None:
        pass

    warning = error = info


def test_a_failing_camera_uses_its_turn_without_counting_as_tracked() -> None:
    clock = Clock()
    scheduler = StepScheduler(["broken", "fine"], 5.0, clock)
    cameras = Cameras(clock, step_s=0.3, frame_period_s={"broken": 0.1, "fine": 0.1})

    def step(camera: str) -> StepOutcome:
        outcome = cameras.step(camera)
        return StepOutcome.FAILED if camera == "broken" and outcome is StepOutcome.STEPPED else outcome
    next_tick = 0.0
    while clock.now < 30.0:
        clock.now = max(clock.now, next_tick)
        began = clock.now
        scheduler.run_due(step)
        next_tick = began + scheduler.tick_s
    assert abs(len(cameras.steps["broken"]) - len(cameras.steps["fine"])) <= 1
    assert (scheduler.rate("broken").steps, scheduler.rate("broken").achieved_hz) == (0, 0.0)
    assert scheduler.rate("fine").steps == len(cameras.steps["fine"])
