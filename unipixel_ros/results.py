"""What a query returns, and the calls the ROS layer makes on the pipeline.

These types are the contract between the ROS-free pipeline and the node: plain
numpy and Python values, no torch and no ROS messages, so either side can be
tested with a double of the other.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.prompts import DEFAULT_LIMITS, RequestLimits, VisualPrompt


@dataclass
class SegmentedObject:
    """One object segmented on every frame of the window used by a request."""

    label: str                      # referring phrase, "[k]" or "click"
    masks: np.ndarray               # [T, H, W] bool, original camera resolution, one per frame
    scores: np.ndarray              # [T] float32, predicted mask quality per frame
    object_index: int | None = None  # k of "[k]" when the object came from a prompt
    memory_id: int | None = None    # id in the memory bank when stored
    tracking: object | None = field(default=None, repr=False)  # SAM 2 state that continues it on new frames


@dataclass
class QueryResult:
    answer: str
    objects: list[SegmentedObject]
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds


@dataclass
class TrackedMask:
    """One memory-bank object on one new frame."""

    mask: np.ndarray                # [H, W] bool
    score: float                    # predicted mask quality
    visible: bool                   # False when SAM 2 says the object is not on this frame


# (stage, tokens generated so far, answer text so far)
ProgressCallback = Callable[[str, int, str], None]


class QueryCancelled(Exception):
    """Raised inside a query when its cancel event was set."""


class QueryPipeline(Protocol):
    """What the node needs from the model side."""

    def query(
        self,
        frames: Sequence[np.ndarray],
        stamps: Sequence[int],
        text: str,
        prompts: Sequence[VisualPrompt] = (),
        memory: ObjectMemoryBank | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        remember: bool = False,
        limits: RequestLimits = DEFAULT_LIMITS,
    ) -> QueryResult:
        """Answer ``text`` about ``frames`` (RGB uint8, oldest first, stamps in ns); with
        ``remember`` the segmented objects go into ``memory`` and are tracked from then on.
        A request beyond ``limits`` raises ``PromptError`` before any model work."""
        ...

    def segment_prompt(
        self, frames: Sequence[np.ndarray], stamps: Sequence[int], prompt: VisualPrompt
    ) -> SegmentedObject:
        """Segment one clicked point or box with SAM 2 alone (no language model pass)."""
        ...

    def track(self, memory: ObjectMemoryBank, frame: np.ndarray, stamp: int) -> dict[int, TrackedMask]:
        """Step every object of ``memory`` whose newest mask is older than ``stamp`` onto the
        frame (:meth:`ObjectMemoryBank.tracked_before`); returns memory id -> mask."""
        ...
