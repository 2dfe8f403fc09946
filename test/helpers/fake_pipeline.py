"""A stand-in for the UniPixel pipeline, to test the ROS layer without a model.

It implements :class:`unipixel_ros.results.QueryPipeline` with masks that follow from
its inputs, so a test can predict every mask the node must return:

* a point prompt -> a disc of radius :data:`DISC_RADIUS` around the point, on every frame;
* a box prompt -> the filled box; a mask prompt -> that mask;
* a memory prompt -> the object's newest mask held in the bank;
* text without prompts -> one object per synthetic palette colour named in the text
  (pixels within :data:`COLOUR_TOLERANCE` of it);
* tracking (objects carrying the double's :class:`FakeTrack` state): each keeps its newest
  non-empty mask in that state, as SAM 2 keeps its memory in its own, so tracking goes on
  when the bank's per-frame masks are dropped; visible unless the frame is black under it;
  each step sleeps ``track_delay_s`` (a slow model) and is recorded in the bank.

Like the real pipeline, ``query(remember=True)`` stores the objects in the bank with a
tracking state, and ``segment_prompt`` returns one for the node to store.

Loading sleeps ``load_delay_s`` first (a checkpoint that loads for long; nothing is
logged before it is done). The answer names the frame count and size and repeats the text. ``query`` reports
progress for each of ``tokens`` decode steps, sleeping ``token_delay_s`` before each and
honouring the cancel event, like the real pipeline. Every call is appended to
``log_path`` as one JSON line (inputs, stamps, a digest of each frame, the request limits)
so tests can check what reached the pipeline.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.prompts import (DEFAULT_LIMITS, BoxPrompt, MaskPrompt, MemoryPrompt, PointPrompt, RequestLimits,
                                  VisualPrompt)
from unipixel_ros.results import (ProgressCallback, QueryCancelled, QueryResult, SegmentedObject,
                                  TrackedMask)
from unipixel_ros.ros.model_host import ModelSettings
from unipixel_ros.synthetic.scenes import PALETTE

DISC_RADIUS = 3
COLOUR_TOLERANCE = 30
DARK_LEVEL = 10          # mean intensity under a mask below this = not visible
SCORE = 0.75


@dataclass
class FakeTrack:
    """The double's tracking state of one object: its newest non-empty mask."""

    mask: np.ndarray


def frame_digest(image: np.ndarray) -> str:
    """Short digest of an image's pixels, for comparing frames across processes."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


def disc(height: int, width: int, x: float, y: float, radius: float = DISC_RADIUS) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx - x) ** 2 + (yy - y) ** 2 <= radius ** 2


def box_mask(height: int, width: int, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)


def colour_mask(image: np.ndarray, colour: str) -> np.ndarray:
    diff = np.abs(image.astype(int) - np.array(PALETTE[colour]))
    return (diff <= COLOUR_TOLERANCE).all(axis=2)


def describe_prompt(prompt: VisualPrompt) -> dict:
    out = {"type": type(prompt).__name__, **{k: v for k, v in vars(prompt).items() if k != "mask"}}
    if isinstance(prompt, MaskPrompt):
        out["mask_pixels"] = int(np.count_nonzero(prompt.mask))
    return out


class FakePipeline:
    """Deterministic :class:`~unipixel_ros.results.QueryPipeline` (see the module doc)."""

    def __init__(self, settings: ModelSettings, log: Callable[[str], None], log_path: str | None = None,
                 token_delay_s: float = 0.0, tokens: int = 4, track_delay_s: float = 0.0,
                 load_delay_s: float = 0.0) -> None:
        time.sleep(load_delay_s)            # a checkpoint that takes its time; nothing is logged before
        self.settings = settings
        log(f"fake pipeline standing in for '{settings.model_id}'")
        self._log_path = Path(log_path) if log_path else None
        self._token_delay_s = token_delay_s
        self._tokens = tokens
        self._track_delay_s = track_delay_s
        self._log_lock = threading.Lock()
        self._log("load", model_id=settings.model_id, device=settings.device, dtype=settings.dtype,
                  decoder_backend=settings.decoder_backend)

    def _log(self, call: str, **fields) -> None:
        if self._log_path is None:
            return
        with self._log_lock, self._log_path.open("a") as f:
            f.write(json.dumps({"call": call, **fields}) + "\n")

    def _prompt_mask(self, prompt: VisualPrompt, shape: tuple[int, int], memory: ObjectMemoryBank | None) -> np.ndarray:
        h, w = shape
        if isinstance(prompt, PointPrompt):
            return disc(h, w, prompt.x, prompt.y)
        if isinstance(prompt, BoxPrompt):
            return box_mask(h, w, prompt.x0, prompt.y0, prompt.x1, prompt.y1)
        if isinstance(prompt, MaskPrompt):
            return np.asarray(prompt.mask, dtype=bool)
        if isinstance(prompt, MemoryPrompt) and memory is not None:
            return memory.get(prompt.memory_id).masks[-1]
        raise ValueError(f"fake pipeline cannot handle {prompt!r}")

    def query(self, frames: Sequence[np.ndarray], stamps: Sequence[int], text: str,
              prompts: Sequence[VisualPrompt] = (), memory: ObjectMemoryBank | None = None,
              progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
              remember: bool = False, limits: RequestLimits = DEFAULT_LIMITS) -> QueryResult:
        self._log("query", stamps=list(stamps), digests=[frame_digest(f) for f in frames], text=text,
                  prompts=[describe_prompt(p) for p in prompts], remember=remember, limits=vars(limits))
        began = time.perf_counter()
        t, (h, w) = len(frames), frames[0].shape[:2]
        answer = f"{t} frames of {w}x{h}: {text}".strip()
        report = progress or (lambda *_: None)
        report("prefill", 0, "")
        for i in range(1, self._tokens + 1):
            time.sleep(self._token_delay_s)
            if cancel is not None and cancel.is_set():
                raise QueryCancelled("canceled during decoding")
            report("decode", i, answer[: len(answer) * i // self._tokens])
        report("segment", self._tokens, answer)
        objects = []
        for prompt in sorted(prompts, key=lambda p: p.object_index):
            mask = self._prompt_mask(prompt, (h, w), memory)
            objects.append(SegmentedObject(label=f"[{prompt.object_index}]", masks=np.repeat(mask[None], t, axis=0),
                                           scores=np.full(t, SCORE, np.float32), object_index=prompt.object_index))
        if not prompts:
            for colour in (c for c in PALETTE if c in text.lower()):
                masks = np.stack([colour_mask(f, colour) for f in frames])
                objects.append(SegmentedObject(label=colour, masks=masks, scores=np.full(t, SCORE, np.float32)))
        if remember and memory is not None:
            for obj in objects:
                obj.memory_id = memory.add(obj.label, zip(stamps, obj.masks, obj.scores.tolist()))
                newest = next((m for m in reversed(obj.masks) if m.any()), obj.masks[-1])
                memory.attach_tracking(obj.memory_id, FakeTrack(newest))
        return QueryResult(answer=answer, objects=objects, timings={"fake_model": time.perf_counter() - began})

    def segment_prompt(self, frames: Sequence[np.ndarray], stamps: Sequence[int],
                       prompt: VisualPrompt) -> SegmentedObject:
        self._log("segment_prompt", stamps=list(stamps), digests=[frame_digest(f) for f in frames],
                  prompt=describe_prompt(prompt))
        t, shape = len(frames), frames[0].shape[:2]
        mask = self._prompt_mask(prompt, shape, None)
        return SegmentedObject(label="click", masks=np.repeat(mask[None], t, axis=0),
                               scores=np.full(t, SCORE, np.float32), object_index=prompt.object_index,
                               tracking=FakeTrack(mask))

    def track(self, memory: ObjectMemoryBank, frame: np.ndarray, stamp: int) -> dict[int, TrackedMask]:
        out = {}
        for object_id, state in memory.tracked_before(stamp).items():   # the pipeline's rule
            if not isinstance(state, FakeTrack):
                continue
            mask = state.mask
            visible = bool(mask.any()) and float(frame[mask].mean()) >= DARK_LEVEL
            out[object_id] = TrackedMask(mask=mask if visible else np.zeros_like(mask), score=SCORE,
                                         visible=visible)
        if out:
            time.sleep(self._track_delay_s)
        for object_id, step in out.items():
            memory.add_frame(object_id, stamp, step.mask, step.score)
        self._log("track", stamp=stamp, digest=frame_digest(frame), ids=sorted(out))
        return out
