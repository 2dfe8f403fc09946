"""Which camera's tracking step runs next, when one model serves them all.

Each camera asks for a step every ``1 / rate_hz`` seconds, and the model runs one step
at a time. When it is slower than the cameras together ask, someone must wait; with a
timer per camera, whichever fires first after the model frees wins, and one camera ends
up with most of the steps. Here one loop owns the decision instead: each pass steps every
camera that is due, most overdue first (then the one stepped longest ago), once each, so
cameras take turns however slow the model is, and a camera whose frame is not there yet
leaves its turn to the others without losing its place.

A camera's next deadline is one period after the previous one, so a fast enough model
gives exactly the asked rate, but never before its last step began, so a camera that fell
behind is owed one step, not a burst. When a request holds the model, the camera tries
again one period later (a skipped step, counted by the model host). The rate achieved
is measured over the last ``rate_window_s`` seconds. ROS-free; the clock is injectable.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

RATE_WINDOW_S = 10.0


class StepOutcome(str, Enum):
    """What one camera's step did."""

    STEPPED = "stepped"              # outputs published for a new frame (with a model step if it has objects)
    NO_NEW_FRAME = "no_new_frame"    # nothing newer than the last published frame
    MODEL_BUSY = "model_busy"        # a request holds the model, or none is loaded
    FAILED = "failed"                # the step raised: its turn is used, but it is not a step achieved


@dataclass(frozen=True)
class CameraRate:
    """One camera's tracking rate: what was asked, what it got."""

    asked_hz: float
    achieved_hz: float               # steps per second over the recent past
    steps: int                       # steps since the scheduler started


@dataclass
class _Camera:
    name: str
    order: int
    deadline: float
    last_began: float = -math.inf
    steps: int = 0
    done_at: deque[float] = field(default_factory=deque)


class StepScheduler:
    """Deadlines of every camera's next step, and the pass that runs the due ones (see the module doc)."""

    def __init__(self, cameras: Sequence[str], rate_hz: float, clock: Callable[[], float] = time.monotonic,
                 rate_window_s: float = RATE_WINDOW_S) -> None:
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"tracking.rate_hz must be a finite number > 0 to schedule steps, got {rate_hz!r}")
        self._rate_hz = float(rate_hz)
        self._period = 1.0 / rate_hz
        self._clock = clock
        self._window = rate_window_s
        self._started = clock()
        self._cameras = {name: _Camera(name, i, self._started) for i, name in enumerate(cameras)}

    @property
    def tick_s(self) -> float:
        """How often to run :meth:`run_due`: twice per period, so a step is at most half a period late."""
        return self._period / 2

    def run_due(self, step: Callable[[str], StepOutcome]) -> None:
        """Run ``step`` once for every camera that is due, most overdue first."""
        now = self._clock()
        due = sorted((c for c in self._cameras.values() if c.deadline <= now),
                     key=lambda c: (c.deadline, c.last_began, c.order))
        for cam in due:
            began = self._clock()
            outcome = step(cam.name)
            if outcome in (StepOutcome.STEPPED, StepOutcome.FAILED):
                cam.deadline = max(cam.deadline + self._period, began)
                cam.last_began = began
            if outcome is StepOutcome.STEPPED:
                cam.steps += 1
                self._count_done(cam, self._clock())
            elif outcome is StepOutcome.MODEL_BUSY:
                cam.deadline = began + self._period

    def rate(self, camera: str) -> CameraRate:
        """The camera's asked and achieved rate; raises KeyError for an unknown camera."""
        cam = self._cameras[camera]
        now = self._clock()
        self._count_done(cam, now, done=False)
        span = min(self._window, now - self._started)
        achieved = len(cam.done_at) / span if span > 0 else 0.0
        return CameraRate(asked_hz=self._rate_hz, achieved_hz=achieved, steps=cam.steps)

    def _count_done(self, cam: _Camera, now: float, done: bool = True) -> None:
        """Note a finished step (when ``done``) and forget those older than the rate window."""
        if done:
            cam.done_at.append(now)
        while cam.done_at and cam.done_at[0] <= now - self._window:
            cam.done_at.popleft()
