"""Object memory: the bank of segmented objects, and the text that injects them into a question.

``ObjectMemoryBank`` keeps, per object id, a label and its most recent per-frame masks and
scores keyed by frame stamp (int nanoseconds). It is bounded on both axes so a long-running
node cannot grow without limit: per object the oldest frames are evicted, and adding an
object to a full bank raises :class:`MemoryFullError` (objects are what the user asked to
keep, so they are never dropped silently; remove or reset to make room). Ids start at 1
(0 means "no object" in messages and is the background of label images),
increase and are never reused, not even after :meth:`ObjectMemoryBank.reset`. All methods
are thread-safe; what they return are immutable snapshots.

The memory prefix is how the published UniPixel checkpoints read objects back: for N
sampled frames,

    Here is a video with N frames denoted as <1> to <N>. The highlighted regions are as follows:
    [0]: <1>-<2> <|mem|> <3>-<4> <|mem|>
    [1]: <3>-<4> <|mem|>

one line per object ``[k]``, one ``<frame>-<frame + 1> <|mem|>`` entry per frame pair
(pair p covers frames 2p+1 and 2p+2, 1-based; with odd N the last pair reads <N>-<N+1>)
whose mask is non-empty, entries joined by a single space, each line ending in a newline.
For a single image (N = 1) the header is "Here is an image with the following highlighted
regions:" and entries carry no frame tags: ``[0]: <|mem|>``. The question follows the
prefix directly. Which pairs count as non-empty is decided by :mod:`unipixel_ros.regions`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unipixel_ros.prompts import MEM_TOKEN
from unipixel_ros.regions import object_frame_pairs
from unipixel_ros.sampling import TEMPORAL_PATCH_SIZE

DEFAULT_MAX_OBJECTS = 32
DEFAULT_MAX_FRAMES_PER_OBJECT = 64


class MemoryBankError(ValueError):
    """A memory-bank operation that cannot be done (unknown id, bad mask or stamp)."""


class MemoryFullError(MemoryBankError):
    """The bank already holds its maximum number of objects."""


@dataclass(frozen=True)
class ObjectRecord:
    """Snapshot of one object: per-frame masks (H x W bool, read-only) and scores, oldest first."""

    object_id: int
    label: str
    stamps: tuple[int, ...]
    masks: tuple[np.ndarray, ...]
    scores: tuple[float, ...]

    def mask_at(self, stamp_ns: int) -> np.ndarray:
        """The mask stored for frame ``stamp_ns``."""
        try:
            return self.masks[self.stamps.index(stamp_ns)]
        except ValueError:
            raise MemoryBankError(f"object {self.object_id} has no mask for stamp {stamp_ns}") from None

    @property
    def latest_stamp(self) -> int | None:
        """Stamp of the most recently inserted frame, None when there is none."""
        return self.stamps[-1] if self.stamps else None


class _Entry:
    __slots__ = ("label", "frames", "tracking")

    def __init__(self, label: str) -> None:
        self.label = label
        self.frames: OrderedDict[int, tuple[np.ndarray, float]] = OrderedDict()
        self.tracking: object | None = None


class ObjectMemoryBank:
    """Bounded map object id -> label + per-frame masks and scores (see the module doc)."""

    def __init__(self, max_objects: int = DEFAULT_MAX_OBJECTS,
                 max_frames_per_object: int = DEFAULT_MAX_FRAMES_PER_OBJECT) -> None:
        if max_objects < 1 or max_frames_per_object < 1:
            raise MemoryBankError(
                f"bank limits must be >= 1, got max_objects={max_objects}, "
                f"max_frames_per_object={max_frames_per_object}")
        self.max_objects = max_objects
        self.max_frames_per_object = max_frames_per_object
        self._lock = threading.RLock()
        self._objects: dict[int, _Entry] = {}
        self._next_id = 1

    def add(self, label: str = "", frames: Iterable[tuple[int, np.ndarray, float]] = ()) -> int:
        """Store a new object, optionally with (stamp_ns, mask, score) frames; returns its id."""
        with self._lock:
            if len(self._objects) >= self.max_objects:
                raise MemoryFullError(
                    f"memory bank is full ({self.max_objects} objects); remove objects or reset it first")
            entry = _Entry(str(label))
            for stamp_ns, mask, score in frames:
                self._put(entry, stamp_ns, mask, score)
            object_id = self._next_id
            self._next_id += 1
            self._objects[object_id] = entry
            return object_id

    def add_frame(self, object_id: int, stamp_ns: int, mask: np.ndarray, score: float = 1.0) -> None:
        """Record an object's mask on frame ``stamp_ns`` (replacing one stored for that stamp,
        which keeps its place); the oldest frame is evicted beyond the per-object limit."""
        with self._lock:
            self._put(self._entry(object_id), stamp_ns, mask, score)

    def clear_frames(self) -> None:
        """Drop every object's per-frame masks, keeping the objects, labels and tracker state.

        For a camera whose stamps restarted: masks keyed by the old timeline's stamps must
        not be matched to new frames that happen to carry the same stamps; the tracker's
        own state still holds the object, so tracking goes on from where it was.
        """
        with self._lock:
            for entry in self._objects.values():
                entry.frames.clear()

    def discard_frame(self, object_id: int, stamp_ns: int) -> None:
        """Drop an object's mask on frame ``stamp_ns`` if one is held."""
        with self._lock:
            self._entry(object_id).frames.pop(int(stamp_ns), None)

    def attach_tracking(self, object_id: int, state: object) -> None:
        """Keep the tracker's state for an object (SAM 2 memory; opaque here) with the object,
        so removing the object also ends its tracking."""
        with self._lock:
            self._entry(object_id).tracking = state

    def tracking(self, object_id: int) -> object | None:
        """The tracker state attached to an object, None when it has none."""
        with self._lock:
            return self._entry(object_id).tracking

    def newest_tracked(self) -> dict[int, int | None]:
        """Id -> stamp of the newest mask held (None: none) of every object with a tracker state."""
        with self._lock:
            return {object_id: max(entry.frames) if entry.frames else None
                    for object_id, entry in sorted(self._objects.items()) if entry.tracking is not None}

    def tracked_before(self, stamp_ns: int) -> dict[int, object]:
        """Id -> tracker state of every object that has one and holds no mask on frame
        ``stamp_ns`` or later: the objects a tracking step onto that frame moves on."""
        with self._lock:
            return {object_id: entry.tracking for object_id, entry in sorted(self._objects.items())
                    if entry.tracking is not None and (not entry.frames or max(entry.frames) < stamp_ns)}

    def get(self, object_id: int) -> ObjectRecord:
        """Snapshot of one object."""
        with self._lock:
            return self._record(object_id, self._entry(object_id))

    def remove(self, object_id: int) -> ObjectRecord:
        """Delete an object; returns what it held."""
        with self._lock:
            record = self.get(object_id)
            del self._objects[object_id]
            return record

    def reset(self) -> None:
        """Delete every object (ids are still not reused)."""
        with self._lock:
            self._objects.clear()

    def ids(self) -> list[int]:
        """Ids of the stored objects, increasing."""
        with self._lock:
            return sorted(self._objects)

    def __iter__(self) -> Iterator[ObjectRecord]:
        """Snapshots of all objects in id order, taken at the start of iteration."""
        with self._lock:
            records = [self._record(i, self._objects[i]) for i in sorted(self._objects)]
        return iter(records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def __contains__(self, object_id: object) -> bool:
        with self._lock:
            return object_id in self._objects

    def _entry(self, object_id: int) -> _Entry:
        try:
            return self._objects[object_id]
        except KeyError:
            raise MemoryBankError(f"no object with id {object_id} in the memory bank") from None

    def _put(self, entry: _Entry, stamp_ns: int, mask: np.ndarray, score: float) -> None:
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
            raise MemoryBankError(f"frame stamp must be a non-negative int of nanoseconds, got {stamp_ns!r}")
        stored = np.array(mask, dtype=bool, copy=True)
        if stored.ndim != 2:
            raise MemoryBankError(f"mask must be H x W, got shape {stored.shape}")
        if entry.frames:
            first = next(iter(entry.frames.values()))[0]
            if first.shape != stored.shape:
                raise MemoryBankError(f"mask shape {stored.shape} differs from the object's {first.shape}")
        stored.setflags(write=False)
        entry.frames[int(stamp_ns)] = (stored, float(score))
        while len(entry.frames) > self.max_frames_per_object:
            entry.frames.popitem(last=False)

    @staticmethod
    def _record(object_id: int, entry: _Entry) -> ObjectRecord:
        return ObjectRecord(object_id=object_id, label=entry.label, stamps=tuple(entry.frames),
                            masks=tuple(m for m, _ in entry.frames.values()),
                            scores=tuple(s for _, s in entry.frames.values()))


VIDEO_PREFIX = "Here is a video with {n} frames denoted as <1> to <{n}>. The highlighted regions are as follows:\n"
IMAGE_PREFIX = "Here is an image with the following highlighted regions:\n"


@dataclass(frozen=True)
class MemoryCell:
    """One ``<|mem|>`` token: object ``[object_index]`` on frame pair ``frame_pair`` (0-based)."""

    object_index: int
    frame_pair: int

    @property
    def first_frame(self) -> int:
        """1-based number of the pair's first frame, as written in the prefix."""
        return self.frame_pair * TEMPORAL_PATCH_SIZE + 1


def memory_cells(object_indices: Sequence[int], masks: np.ndarray | torch.Tensor) -> list[MemoryCell]:
    """The ``<|mem|>`` cells for objects ``[k]`` with masks [N, O, H, W] on the sampled frames.

    Object-major, pairs increasing: the order in which the pooled features
    (:func:`unipixel_ros.regions.pool_region_features`) fill the ``<|mem|>`` tokens.
    """
    indices = list(object_indices)
    if len(set(indices)) != len(indices):
        raise MemoryBankError(f"object indices must be distinct, got {indices}")
    pairs = object_frame_pairs(masks)
    if len(pairs) != len(indices):
        raise MemoryBankError(f"{len(indices)} object indices for masks of {len(pairs)} objects")
    return [MemoryCell(k, p) for k, obj_pairs in zip(indices, pairs) for p in obj_pairs]


def format_memory_prefix(num_frames: int, cells: Sequence[MemoryCell]) -> str:
    """The prefix text for ``num_frames`` sampled frames and the given cells (objects in order
    of first appearance)."""
    if num_frames < 1:
        raise MemoryBankError(f"need at least one frame, got {num_frames}")
    lines: dict[int, list[str]] = {}
    for cell in cells:
        tag = "" if num_frames == 1 else f"<{cell.first_frame}>-<{cell.first_frame + 1}> "
        lines.setdefault(cell.object_index, []).append(tag + MEM_TOKEN)
    header = IMAGE_PREFIX if num_frames == 1 else VIDEO_PREFIX.format(n=num_frames)
    return header + "".join(f"[{k}]: {' '.join(entries)}\n" for k, entries in lines.items())


def memory_prefix(object_indices: Sequence[int], masks: np.ndarray | torch.Tensor) -> str:
    """Prefix for objects ``[k]`` with masks [N, O, H, W] on the N sampled frames."""
    return format_memory_prefix(int(masks.shape[0]), memory_cells(object_indices, masks))


def memory_question(question: str, object_indices: Sequence[int], masks: np.ndarray | torch.Tensor) -> str:
    """The user text of the injection pass: prefix immediately followed by the question."""
    return memory_prefix(object_indices, masks) + question
