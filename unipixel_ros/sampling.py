"""Which frames of a window the language model sees, and at what size.

UniPixel feeds media to Qwen2.5-VL as a video in every case (a single image is a
one-frame video). The published checkpoints were run with:

* at most 16 frames, taken uniformly from the window: positions
  ``round(i * (n - 1) / (k - 1))`` for i < k, rounded half to even (numpy's rule); a
  window of at most k frames is used whole. A frame that carries a visual prompt is
  forced into the sample by replacing the nearest sampled position.
* the sampled list padded to an even length by repeating its last frame (Qwen2.5-VL
  packs 2 frames into one temporal patch);
* every frame resized (Pillow bicubic) to a multiple of 28 per side with the pixel count
  in [128*28*28, 256*28*28 * (16 // N)], N = number of sampled frames before padding,
  using Qwen-VL's ``smart_resize`` rule (round to 28, then rescale by
  sqrt(area ratio) with ceil/floor to 28 if out of bounds);
* a frame rate of 2.0 passed to the processor.

The processor then makes a grid of (N_even / 2, h / 14, w / 14) patches. SAM 2 is not
affected by any of this: it always takes every frame of the window at its own size.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

MAX_SAMPLED_FRAMES = 16
TEMPORAL_PATCH_SIZE = 2
PATCH_SIZE = 14
SPATIAL_MERGE_SIZE = 2
RESIZE_FACTOR = PATCH_SIZE * SPATIAL_MERGE_SIZE  # 28
MIN_PIXELS = 128 * RESIZE_FACTOR * RESIZE_FACTOR
BASE_MAX_PIXELS = 256 * RESIZE_FACTOR * RESIZE_FACTOR
MAX_ASPECT_RATIO = 200
VIDEO_FPS = 2.0


class SamplingError(ValueError):
    """A frame window or image size that cannot be turned into model input."""


def padded_frame_count(num_frames: int) -> int:
    """Frames after padding to a whole number of temporal patches (1 -> 2, 3 -> 4, 4 -> 4)."""
    if num_frames < 1:
        raise SamplingError(f"need at least one frame, got {num_frames}")
    return -(-num_frames // TEMPORAL_PATCH_SIZE) * TEMPORAL_PATCH_SIZE


def uniform_frame_indices(num_frames: int, max_frames: int = MAX_SAMPLED_FRAMES) -> list[int]:
    """Evenly spread positions in a window of ``num_frames``, first and last included."""
    if num_frames < 1:
        raise SamplingError(f"need at least one frame, got {num_frames}")
    if max_frames < 2:
        raise SamplingError(f"max_frames must be at least 2, got {max_frames}")
    if num_frames <= max_frames:
        return list(range(num_frames))
    step = (num_frames - 1) / (max_frames - 1)
    return np.rint(np.arange(max_frames) * step).astype(int).tolist()


def sample_frame_indices(num_frames: int, max_frames: int = MAX_SAMPLED_FRAMES,
                         keep: Iterable[int] = ()) -> list[int]:
    """Uniform sample that also contains every window position in ``keep``.

    Each kept position not yet sampled replaces the nearest sampled position (the earlier
    one on a tie) that is not itself kept. Returned in increasing order.
    """
    indices = uniform_frame_indices(num_frames, max_frames)
    kept = sorted(set(keep))
    for k in kept:
        if not 0 <= k < num_frames:
            raise SamplingError(f"frame {k} to keep is outside the window of {num_frames} frames")
    if len(kept) > len(indices):
        raise SamplingError(f"cannot keep {len(kept)} prompted frames in a sample of {len(indices)}")
    for k in kept:
        if k in indices:
            continue
        free = [i for i, v in enumerate(indices) if v not in kept]
        nearest = min(free, key=lambda i: (abs(indices[i] - k), i))
        indices[nearest] = k
    return sorted(indices)


def max_pixels_for(num_sampled: int, max_frames: int = MAX_SAMPLED_FRAMES) -> int:
    """Per-frame pixel budget: 256*28*28 times ``max_frames // num_sampled`` (integer factor)."""
    if not 1 <= num_sampled <= max_frames:
        raise SamplingError(f"sampled frame count {num_sampled} is not in [1, {max_frames}]")
    return BASE_MAX_PIXELS * (max_frames // num_sampled)


def smart_resize(height: int, width: int, min_pixels: int = MIN_PIXELS, max_pixels: int = BASE_MAX_PIXELS,
                 factor: int = RESIZE_FACTOR) -> tuple[int, int]:
    """Target (height, width): multiples of ``factor``, area within bounds, aspect kept.

    Each side is first rounded to the nearest multiple (Python's round, half to even,
    at least one factor); if the area is then below ``min_pixels`` both sides are scaled
    up by sqrt(min_pixels / area) and rounded up, and if above ``max_pixels`` scaled
    down by sqrt(area / max_pixels) and rounded down.
    """
    if height < 1 or width < 1:
        raise SamplingError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise SamplingError(f"aspect ratio of {width}x{height} exceeds {MAX_ASPECT_RATIO}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class FramePlan:
    """The language model's view of a window.

    indices: window positions of the sampled frames (N of them, increasing);
    padded_indices: the frames actually given to the processor (N_even, last repeated);
    height, width: the size every sampled frame is resized to;
    grid_thw: the processor's patch grid (N_even / 2, height / 14, width / 14).
    """

    indices: tuple[int, ...]
    padded_indices: tuple[int, ...]
    height: int
    width: int
    grid_thw: tuple[int, int, int]

    @property
    def num_sampled(self) -> int:
        """N: the frame count the memory prefix speaks of (``<1>`` to ``<N>``)."""
        return len(self.indices)

    @property
    def num_padded(self) -> int:
        """N_even: the frame count the temporal prompt encoding is normalised by."""
        return len(self.padded_indices)

    @property
    def num_video_tokens(self) -> int:
        """Vision tokens after the 2x2 merge: t * (h/2) * (w/2)."""
        t, h, w = self.grid_thw
        return t * (h // SPATIAL_MERGE_SIZE) * (w // SPATIAL_MERGE_SIZE)

    def position_of(self, window_index: int) -> int:
        """Position among the sampled frames of a window frame (e.g. a prompt's frame)."""
        try:
            return self.indices.index(window_index)
        except ValueError:
            raise SamplingError(f"window frame {window_index} is not among the sampled frames {self.indices}") from None


def plan_frames(num_frames: int, height: int, width: int, max_frames: int = MAX_SAMPLED_FRAMES,
                keep: Iterable[int] = ()) -> FramePlan:
    """Sample a window of ``num_frames`` frames of ``height`` x ``width`` for the language model."""
    indices = sample_frame_indices(num_frames, max_frames, keep)
    padded = indices + [indices[-1]] * (padded_frame_count(len(indices)) - len(indices))
    target_h, target_w = smart_resize(height, width, MIN_PIXELS, max_pixels_for(len(indices), max_frames))
    grid = (len(padded) // TEMPORAL_PATCH_SIZE, target_h // PATCH_SIZE, target_w // PATCH_SIZE)
    return FramePlan(tuple(indices), tuple(padded), target_h, target_w, grid)


def resize_for_llm(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an RGB uint8 H x W x 3 frame as the checkpoints saw it (Pillow bicubic)."""
    from PIL import Image

    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise SamplingError(f"expected an RGB uint8 HxWx3 frame, got shape {frame.shape} dtype {frame.dtype}")
    if frame.shape[:2] == (height, width):
        return frame
    image = Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image)


def select_frames(frames: Sequence[np.ndarray], plan: FramePlan) -> list[np.ndarray]:
    """The padded, resized frame list to hand to the processor as one video."""
    return [resize_for_llm(frames[i], plan.height, plan.width) for i in plan.padded_indices]
