"""Per-camera sliding windows of recent frames, bounded by time, count and bytes.

ROS-free on purpose: the node's subscription callbacks add frames and the query side
reads them from another thread, and both sides are tested without a ROS graph.

Conventions
-----------
* A frame's image is RGB, ``uint8``, shape ``(H, W, 3)``, C-contiguous and read-only.
  Grey cameras are expanded to three equal channels: the model and every consumer
  take RGB, and one layout keeps the byte accounting and the query code simple.
* Time is the camera's header stamp in integer nanoseconds, never the arrival time:
  the window's duration bound, ordering and the stamp lookups all use it, so
  bag playback and simulated time behave like a live camera.
* The window always holds the newest frames (by stamp) that satisfy all three
  bounds together: a new frame evicts the oldest ones until the span
  ``newest - oldest`` is at most ``duration_s``, the count at most ``max_frames``
  and the summed bytes at most ``max_bytes`` (a decoded frame's image; a compressed
  frame's payload, plus its decoded image while the window keeps one: see :class:`Frame`).
* Stamps can jump (a bag played in a loop, a simulator reset, ``use_sim_time``
  switched, a driver restart). The window owns the camera's timeline: its
  ``epoch`` counts the restarts, and whatever is keyed on stamps (the tracker's
  "newer than the last stamp", kept objects' per-frame masks) follows it.
* A camera with a depth stream also holds its depth images (:class:`DepthImage`, metres,
  ``float32``), beside the colour frames rather than inside them: depth and colour arrive
  separately, in either order, and a colour frame is paired with the depth image nearest in
  stamp when it is used (:meth:`FrameWindow.depth_near`). Depth images follow the same
  bounds (their bytes count toward ``max_bytes``, oldest colour or depth image leaves first).
"""
from __future__ import annotations

import bisect
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

NS_PER_S = 1_000_000_000
# Decoded images a window keeps of its compressed frames: the newest frame (tracking step, its
# overlay, a click) and the one before, while a step on it may still run. More would only hold
# memory: a query keeps its own images for as long as it runs.
DECODED_FRAMES = 2


class FrameError(ValueError):
    """An image or camera description that cannot be stored as a frame."""


class FrameDecodeError(FrameError):
    """A compressed frame whose pixels turned out not to decode when they were needed; the
    decoder's own error is the ``__cause__``. The frame has left its window by then."""


class WindowLimitsError(ValueError):
    """A window bound out of range; ``field`` names the offending :class:`WindowLimits` field."""

    def __init__(self, field_name: str, why: str) -> None:
        super().__init__(f"{field_name}: {why}")
        self.field = field_name
        self.why = why


class WindowQueryError(ValueError):
    """A selection request on a window that makes no sense (e.g. a negative count)."""


@dataclass(frozen=True, eq=False)
class CameraIntrinsics:
    """What the query side needs from ``sensor_msgs/CameraInfo``: image size and calibration."""

    width: int
    height: int
    k: np.ndarray                 # 3x3 intrinsic matrix, row-major, read-only
    distortion_model: str = ""
    d: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        k = np.array(self.k, dtype=np.float64).reshape(3, 3)
        k.flags.writeable = False
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "d", tuple(float(v) for v in self.d))
        if self.width < 0 or self.height < 0:
            raise FrameError(f"camera info size must be non-negative, got {self.width}x{self.height}")


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """A compressed image kept as it arrived: its bytes (the message's own buffer, not copied),
    their ``format``, the size its header gives, and the ``decoder`` that turns it into RGB.

    It has a ``sensor_msgs/CompressedImage``'s ``format`` and ``data``, so the decoder is the
    converter that decodes such messages.
    """

    data: Any                      # a buffer: bytes, or the message's array('B')
    format: str
    height: int
    width: int
    decoder: Callable[["EncodedImage"], np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise FrameError(f"encoded image must have a size > 0, got {self.width}x{self.height}")

    @property
    def nbytes(self) -> int:
        return int(memoryview(self.data).nbytes)


def _checked_image(image: Any) -> np.ndarray:
    """An RGB ``uint8`` (H, W, 3) C-contiguous array, made read-only; else FrameError."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise FrameError(f"frame image must be a uint8 numpy array, got {type(image).__name__} "
                         f"{getattr(image, 'dtype', '')}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise FrameError(f"frame image must have shape (H, W, 3) with H, W > 0, got {image.shape}")
    if not image.flags.c_contiguous:
        raise FrameError("frame image must be C-contiguous (a compact copy, not a strided view)")
    if image.flags.writeable:
        image.flags.writeable = False
    return image


class Frame:
    """One stored camera image with the stamp and frame_id it arrived with.

    A frame holds either decoded pixels (``Frame(image, ...)``) or a compressed image
    (:meth:`from_encoded`) that is decoded when :attr:`image` is first read: most frames of a
    compressed stream are never used (the tracker steps on some, a query samples a few), so
    decoding each on arrival would cost the node most of its ingest CPU. A decoded image is
    shared while anyone uses it (a weak reference: a query's images, a tracking step), and
    the window keeps the decoded images of its newest :data:`DECODED_FRAMES` used frames
    (counted in its bytes), so a query, a click, a tracking step and the overlay drawn after
    it decode a frame once. A frame that does not decode raises :class:`FrameDecodeError` then and on every
    later read, and leaves its window.
    """

    __slots__ = ("_image", "_encoded", "_stamp_ns", "_frame_id", "_camera_info", "_lock", "_ref", "_failure",
                 "_window", "__weakref__")

    def __init__(self, image: np.ndarray | None, stamp_ns: int, frame_id: str,
                 camera_info: CameraIntrinsics | None = None, *, encoded: EncodedImage | None = None) -> None:
        if (image is None) == (encoded is None):
            raise FrameError("a frame holds either an image or an encoded image, exactly one")
        self._image = None if image is None else _checked_image(image)
        self._encoded = encoded
        self._stamp_ns = int(stamp_ns)
        self._frame_id = frame_id
        self._camera_info = camera_info
        self._lock = threading.Lock() if encoded is not None else None
        self._ref: weakref.ref[np.ndarray] | None = None
        self._failure: FrameDecodeError | None = None
        self._window: FrameWindow | None = None

    @classmethod
    def from_encoded(cls, encoded: EncodedImage, stamp_ns: int, frame_id: str,
                     camera_info: CameraIntrinsics | None = None) -> Frame:
        """A frame that decodes ``encoded`` when its pixels are first needed."""
        return cls(None, stamp_ns, frame_id, camera_info, encoded=encoded)

    @property
    def stamp_ns(self) -> int:
        return self._stamp_ns

    @property
    def frame_id(self) -> str:
        return self._frame_id

    @property
    def camera_info(self) -> CameraIntrinsics | None:
        return self._camera_info

    @property
    def encoded(self) -> EncodedImage | None:
        """The compressed image this frame decodes from, or None for a frame stored decoded."""
        return self._encoded

    @property
    def image(self) -> np.ndarray:
        """The RGB pixels (read-only); a compressed frame is decoded here on first use.

        Raises :class:`FrameDecodeError` when a compressed frame does not decode.
        """
        if self._image is not None:
            return self._image
        image = self._decode()
        if self._window is not None:
            self._window._keep_decoded(self, image)
        return image

    def _decode(self) -> np.ndarray:
        encoded = self._encoded
        assert encoded is not None and self._lock is not None
        with self._lock:
            if self._failure is not None:
                raise self._failure
            image = self._ref() if self._ref is not None else None
            if image is not None:
                return image
            try:
                image = _checked_image(encoded.decoder(encoded))
                if image.shape[:2] != (encoded.height, encoded.width):
                    raise FrameError(f"decoded to {image.shape[1]}x{image.shape[0]}, its header says "
                                     f"{encoded.width}x{encoded.height}")
            except Exception as exc:  # whatever the decoder raises, the frame is unusable
                self._failure = FrameDecodeError(f"frame {self._stamp_ns} ns ({encoded.format or 'no format'}, "
                                                 f"{encoded.nbytes} bytes) does not decode: {exc}")
                if self._window is not None:
                    self._window._undecodable(self, exc)
                raise self._failure from exc
            self._ref = weakref.ref(image)
            return image

    @property
    def nbytes(self) -> int:
        """Bytes the frame holds (its image, or its compressed bytes); what ``max_bytes`` counts."""
        return int(self._image.nbytes if self._image is not None else self._encoded.nbytes)

    @property
    def height(self) -> int:
        return int(self._image.shape[0] if self._image is not None else self._encoded.height)

    @property
    def width(self) -> int:
        return int(self._image.shape[1] if self._image is not None else self._encoded.width)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The image's shape, (H, W, 3), known without decoding."""
        return self.height, self.width, 3


@dataclass(frozen=True, eq=False)
class DepthImage:
    """One stored depth image: metres (0 / NaN = no measurement), its stamp, frame and calibration."""

    depth_m: np.ndarray
    stamp_ns: int
    frame_id: str
    camera_info: CameraIntrinsics | None = None

    def __post_init__(self) -> None:
        depth = self.depth_m
        if not isinstance(depth, np.ndarray) or depth.dtype != np.float32 or depth.ndim != 2 or 0 in depth.shape:
            raise FrameError(f"depth image must be a float32 (H, W) numpy array with H, W > 0, got "
                             f"{type(depth).__name__} {getattr(depth, 'dtype', '')} {getattr(depth, 'shape', '')}")
        if not depth.flags.c_contiguous:
            raise FrameError("depth image must be C-contiguous")
        if depth.flags.writeable:
            depth.flags.writeable = False
        object.__setattr__(self, "stamp_ns", int(self.stamp_ns))

    @property
    def nbytes(self) -> int:
        return int(self.depth_m.nbytes)


@dataclass(frozen=True)
class WindowLimits:
    """Bounds of one camera's window; all must be positive so memory stays bounded."""

    duration_s: float
    max_frames: int
    max_bytes: int
    decimation: int = 1            # keep one frame in every ``decimation`` usable frames

    def __post_init__(self) -> None:
        duration = self.duration_s
        if (isinstance(duration, bool) or not isinstance(duration, (int, float))
                or not math.isfinite(duration) or duration <= 0):
            raise WindowLimitsError("duration_s", f"must be a finite number > 0, got {self.duration_s!r}")
        for name in ("max_frames", "max_bytes", "decimation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WindowLimitsError(name, f"must be an integer >= 1, got {value!r}")

    @property
    def duration_ns(self) -> int:
        return int(round(self.duration_s * NS_PER_S))


class Admission(str, Enum):
    """What happened to a frame offered to a window. Values are stable counter names."""

    STORED = "stored"
    DECIMATED = "decimated"                      # skipped on purpose by the decimation
    DUPLICATE_STAMP = "duplicate_stamp"          # same stamp as a held or the newest seen frame
    TOO_OLD = "too_old"                          # older than everything the bounds keep
    TOO_LARGE = "frame_exceeds_max_bytes"        # one image alone is over ``max_bytes``
    HELD = "held_stamp_jump"                     # far ahead of the newest: kept aside until the next frame

    @property
    def is_drop(self) -> bool:
        """True for the outcomes that lose a frame the user did not ask to skip."""
        return self not in (Admission.STORED, Admission.DECIMATED, Admission.HELD)


@dataclass(frozen=True)
class WindowStats:
    """A consistent snapshot of a window's fill and lifetime counters."""

    frames: int
    bytes: int
    oldest_ns: int | None
    newest_ns: int | None
    evicted: int
    stamp_resets: int              # timeline restarts (stamps jumped back); the window's epoch
    stamp_outliers: int            # single frames stamped far ahead that the next frame did not follow
    limits: WindowLimits = field(repr=False)
    depth_frames: int = 0          # depth images held (their bytes are in ``bytes``)
    decoded_frames: int = 0        # decoded images kept of compressed frames (their bytes are in ``bytes``)

    @property
    def span_s(self) -> float:
        """Stamp distance between the oldest and newest held frame (0 with < 2 frames)."""
        if self.oldest_ns is None or self.newest_ns is None:
            return 0.0
        return (self.newest_ns - self.oldest_ns) / NS_PER_S

    @property
    def fill(self) -> dict[str, float]:
        """Fraction of each bound in use: frames, bytes and duration."""
        return {
            "frames": self.frames / self.limits.max_frames,
            "bytes": self.bytes / self.limits.max_bytes,
            "duration": self.span_s / self.limits.duration_s,
        }


class FrameWindow:
    """Thread-safe sliding window of one camera's frames, ordered by stamp.

    Adding is two steps so that a frame that will not be kept is never decoded:
    :meth:`admit` decides from the stamp alone (duplicates, decimation), then
    :meth:`insert` stores the frame (decoded, or compressed and decoded when used).
    :meth:`add` does both. Readers get immutable snapshots (tuples of immutable frames
    with read-only images), so they never hold the lock while they work.

    Out-of-order stamps are inserted at their place. A stamp that jumps back further
    than ``duration_s`` behind the newest frame cannot be transport reordering; it
    means the source's clock restarted (a looping bag, a restarted simulation), so
    the window is emptied and starts again from that frame, and :attr:`epoch` (also
    ``stamp_resets``) goes up: stamps of the old timeline mean nothing on the new one.

    A stamp further ahead of the newest frame than both ``duration_s`` and the time
    that really passed since that frame arrived (``clock``, the arrival clock; a camera
    that was silent for a minute is not a jump) is a leap: one bad stamp, or the clock
    moved on (``use_sim_time`` switched off). One frame cannot tell, so the frame is
    held aside (HELD) and the next one decides: if that one also leaps, time moved on,
    the held frame is stored and the older frames leave by the duration bound (stamps
    still increase, so the epoch stays); if it continues the old stamps, the held frame
    was an outlier and is dropped (``stamp_outliers``), the window untouched by it.

    Compressed frames (:meth:`Frame.from_encoded`) count their compressed bytes; the window
    also keeps the images decoded from its newest ``decoded_frames`` frames that were used,
    counted in its bytes while kept and the first thing let go when the bytes are over
    ``max_bytes`` (they can be decoded again), and dropped with their frame. A frame that does not decode when
    used leaves the window and is reported to ``on_undecodable`` (frame, decoder's error).
    """

    def __init__(self, limits: WindowLimits, clock: Callable[[], float] = time.monotonic,
                 on_undecodable: Callable[[Frame, Exception], None] | None = None,
                 decoded_frames: int = DECODED_FRAMES) -> None:
        self._limits = limits
        self._clock = clock
        self._on_undecodable = on_undecodable
        self._decoded_limit = decoded_frames
        self._decoded: dict[int, tuple[Frame, np.ndarray]] = {}   # id(frame) -> its decoded image
        self._lock = threading.Lock()
        self._frames: list[Frame] = []
        self._stamps: list[int] = []
        self._bytes = 0
        self._usable_seen = 0          # frames that passed the stamp checks, for decimation
        self._newest_seen_ns: int | None = None
        self._evicted = 0
        self._stamp_resets = 0
        self._stamp_outliers = 0
        self._newest_arrival = 0.0     # arrival clock when the newest held frame came
        self._held: tuple[Frame, float] | None = None   # a leaping frame and its arrival
        self._depths: list[DepthImage] = []
        self._depth_stamps: list[int] = []

    @property
    def limits(self) -> WindowLimits:
        return self._limits

    @property
    def epoch(self) -> int:
        """The timeline's number: goes up each time the stamps jump back and the window restarts."""
        with self._lock:
            return self._stamp_resets

    # -- writing -------------------------------------------------------------------------

    def admit(self, stamp_ns: int) -> Admission:
        """Decide from the stamp whether a frame should be decoded and inserted.

        Returns STORED when the caller should decode the frame and call :meth:`insert`;
        DUPLICATE_STAMP or DECIMATED otherwise. Every usable stamp counts toward the
        decimation, including frames that later fail to decode.
        """
        with self._lock:
            if stamp_ns == self._newest_seen_ns or self._holds(stamp_ns):
                return Admission.DUPLICATE_STAMP
            if self._newest_seen_ns is None or stamp_ns > self._newest_seen_ns:
                self._newest_seen_ns = stamp_ns
            keep = self._usable_seen % self._limits.decimation == 0
            self._usable_seen += 1
            return Admission.STORED if keep else Admission.DECIMATED

    def insert(self, frame: Frame) -> Admission:
        """Store an admitted frame and evict what the bounds no longer allow.

        Returns STORED; HELD for a frame stamped far ahead (see the class doc: the next
        frame decides whether it is stored or dropped); or why the frame was not kept: its
        stamp became a duplicate meanwhile, it is older than everything the bounds keep (the
        window is then left untouched), or it is over ``max_bytes`` by itself.
        """
        if frame.nbytes > self._limits.max_bytes:
            return Admission.TOO_LARGE
        stamp = frame.stamp_ns
        with self._lock:
            if self._holds(stamp) or (self._held is not None and self._held[0].stamp_ns == stamp):
                return Admission.DUPLICATE_STAMP
            now = self._clock()
            leaps = self._leaps_locked(stamp, now)
            if self._held is not None:
                held, held_at = self._held
                self._held = None
                if leaps:                                  # time moved on: the held frame was right
                    self._store_locked(held, held_at)
                    leaps = self._leaps_locked(stamp, now)
                else:
                    self._stamp_outliers += 1
                    self._newest_seen_ns = max(stamp, self._stamps[-1])
            if leaps:
                self._held = (frame, now)
                return Admission.HELD
            if self._stamps and stamp < self._stamps[-1] - self._limits.duration_ns:
                near = [d for d in self._depths if abs(d.stamp_ns - stamp) <= self._limits.duration_ns]
                self._reset_locked()
                self._keep_depths_locked(near)
                self._stamp_resets += 1
                self._newest_seen_ns = stamp
                self._usable_seen = 1
            return self._store_locked(frame, now)

    def add(self, frame: Frame) -> Admission:
        """:meth:`admit` then :meth:`insert`, for a frame already built."""
        verdict = self.admit(frame.stamp_ns)
        return self.insert(frame) if verdict is Admission.STORED else verdict

    def insert_depth(self, depth: DepthImage) -> Admission:
        """Store a depth image (STORED), or say why not: its stamp is already held, it is alone
        over ``max_bytes``, or it is older than the bounds keep. A depth stamp further back than
        ``duration_s`` behind the newest depth image restarts the depth images (a new timeline)."""
        if depth.nbytes > self._limits.max_bytes:
            return Admission.TOO_LARGE
        stamp = depth.stamp_ns
        with self._lock:
            i = bisect.bisect_left(self._depth_stamps, stamp)
            if i < len(self._depth_stamps) and self._depth_stamps[i] == stamp:
                return Admission.DUPLICATE_STAMP
            if self._depth_stamps and stamp < self._depth_stamps[-1] - self._limits.duration_ns:
                self._keep_depths_locked([])
                i = 0
            self._depth_stamps.insert(i, stamp)
            self._depths.insert(i, depth)
            self._bytes += depth.nbytes
            self._evicted += self._evict_locked()
            return Admission.STORED if self._holds_depth(depth) else Admission.TOO_OLD

    def depth_near(self, stamp_ns: int) -> tuple[DepthImage | None, int | None]:
        """The held depth image nearest in stamp to ``stamp_ns`` (older wins a tie) and its
        distance [ns]; (None, None) while none is held."""
        with self._lock:
            i = bisect.bisect_left(self._depth_stamps, stamp_ns)
            best: tuple[DepthImage | None, int | None] = (None, None)
            for j in (i - 1, i):
                if 0 <= j < len(self._depth_stamps):
                    dist = abs(self._depth_stamps[j] - stamp_ns)
                    if best[1] is None or dist < best[1]:
                        best = (self._depths[j], dist)
            return best

    def clear(self) -> None:
        """Forget every frame and restart the decimation phase; counters are kept."""
        with self._lock:
            self._reset_locked()

    def _leaps_locked(self, stamp_ns: int, now: float) -> bool:
        """Whether ``stamp_ns`` is further ahead of the newest frame than the window's
        duration plus the time that passed since that frame arrived."""
        if not self._stamps:
            return False
        passed_ns = max(0.0, now - self._newest_arrival) * NS_PER_S
        return stamp_ns - self._stamps[-1] > self._limits.duration_ns + passed_ns

    def _store_locked(self, frame: Frame, arrival: float) -> Admission:
        stamp = frame.stamp_ns
        pos = bisect.bisect_left(self._stamps, stamp)
        newer = self._frames[pos:]
        if (len(newer) + 1 > self._limits.max_frames
                or sum(f.nbytes for f in newer) + frame.nbytes > self._limits.max_bytes):
            return Admission.TOO_OLD
        if pos == len(self._stamps):
            self._newest_arrival = arrival
        self._stamps.insert(pos, stamp)
        self._frames.insert(pos, frame)
        self._bytes += frame.nbytes
        if frame.encoded is not None and frame._window is None:
            frame._window = self
        self._evicted += self._evict_locked()
        return Admission.STORED

    def _keep_decoded(self, frame: Frame, image: np.ndarray) -> None:
        """Keep ``image``, decoded from ``frame`` (if still held), unless ``decoded_frames``
        newer frames already have theirs kept or the bytes would go over ``max_bytes``; called
        by :attr:`Frame.image`. Newest frames first: tracking steps, clicks and overlays use
        the newest, and a query that decodes older ones holds those itself."""
        with self._lock:
            key = id(frame)
            if key in self._decoded or not self._holds_frame(frame):
                return
            self._decoded[key] = (frame, image)
            self._bytes += image.nbytes
            while self._decoded and (len(self._decoded) > self._decoded_limit
                                     or self._bytes > self._limits.max_bytes):
                self._drop_oldest_decoded_locked()

    def _drop_oldest_decoded_locked(self) -> None:
        key = min(self._decoded, key=lambda k: self._decoded[k][0].stamp_ns)
        self._bytes -= self._decoded.pop(key)[1].nbytes

    def _undecodable(self, frame: Frame, error: Exception) -> None:
        """A held frame did not decode: it leaves the window, and ``on_undecodable`` hears of it."""
        with self._lock:
            if not self._holds_frame(frame):
                return
            i = bisect.bisect_left(self._stamps, frame.stamp_ns)
            del self._frames[i], self._stamps[i]
            self._bytes -= frame.nbytes + self._uncache_locked(frame)
        if self._on_undecodable is not None:
            self._on_undecodable(frame, error)

    def _uncache_locked(self, frame: Frame) -> int:
        """Let go of ``frame``'s decoded image, if kept; returns the bytes it took (not yet
        taken off ``_bytes``)."""
        kept = self._decoded.pop(id(frame), None)
        return 0 if kept is None else int(kept[1].nbytes)

    def _holds_frame(self, frame: Frame) -> bool:
        i = bisect.bisect_left(self._stamps, frame.stamp_ns)
        return i < len(self._frames) and self._frames[i] is frame

    def _holds_depth(self, depth: DepthImage) -> bool:
        i = bisect.bisect_left(self._depth_stamps, depth.stamp_ns)
        return i < len(self._depths) and self._depths[i] is depth

    def _keep_depths_locked(self, depths: list[DepthImage]) -> None:
        self._bytes -= sum(d.nbytes for d in self._depths)
        self._depths = sorted(depths, key=lambda d: d.stamp_ns)
        self._depth_stamps = [d.stamp_ns for d in self._depths]
        self._bytes += sum(d.nbytes for d in self._depths)

    def _holds(self, stamp_ns: int) -> bool:
        i = bisect.bisect_left(self._stamps, stamp_ns)
        return i < len(self._stamps) and self._stamps[i] == stamp_ns

    def _reset_locked(self) -> None:
        self._frames.clear()
        self._stamps.clear()
        self._decoded.clear()
        self._depths.clear()
        self._depth_stamps.clear()
        self._bytes = 0
        self._usable_seen = 0
        self._newest_seen_ns = None
        self._held = None

    def _evict_locked(self) -> int:
        """Drop oldest frames and depth images until all bounds hold; returns how many colour
        frames were dropped. Depth images follow the duration bound measured from the newest
        depth image (their own stream: a depth stream that restarts before the colour one keeps
        its new images) and the count bound; over the byte bound the oldest of either kind
        leaves first."""
        limits = self._limits
        n = 0
        if self._stamps:
            cutoff = self._stamps[-1] - limits.duration_ns
            while n < len(self._stamps) and (self._stamps[n] < cutoff
                                             or len(self._stamps) - n > limits.max_frames):
                self._bytes -= self._frames[n].nbytes + self._uncache_locked(self._frames[n])
                n += 1
        d = 0
        if self._depth_stamps:
            cutoff = self._depth_stamps[-1] - limits.duration_ns
            while d < len(self._depth_stamps) and (self._depth_stamps[d] < cutoff
                                                   or len(self._depth_stamps) - d > limits.max_frames):
                self._bytes -= self._depths[d].nbytes
                d += 1
        while self._bytes > limits.max_bytes and self._decoded:       # decoded copies go first
            self._drop_oldest_decoded_locked()
        while self._bytes > limits.max_bytes and (n < len(self._stamps) or d < len(self._depth_stamps)):
            colour_first = d >= len(self._depth_stamps) or (
                n < len(self._stamps) and self._stamps[n] <= self._depth_stamps[d])
            if colour_first:
                self._bytes -= self._frames[n].nbytes
                n += 1
            else:
                self._bytes -= self._depths[d].nbytes
                d += 1
        if n:
            del self._frames[:n]
            del self._stamps[:n]
        if d:
            del self._depths[:d]
            del self._depth_stamps[:d]
        return n

    # -- reading -------------------------------------------------------------------------

    def snapshot(self) -> tuple[Frame, ...]:
        """All held frames, oldest first."""
        with self._lock:
            return tuple(self._frames)

    def latest(self) -> Frame | None:
        """The newest frame, or None while the window is empty."""
        with self._lock:
            return self._frames[-1] if self._frames else None

    def latest_with_epoch(self) -> tuple[int, Frame | None]:
        """The epoch and the newest frame, read together (the frame belongs to that timeline)."""
        with self._lock:
            return self._stamp_resets, self._frames[-1] if self._frames else None

    def last_frames(self, count: int) -> tuple[Frame, ...]:
        """The newest ``count`` frames (fewer if the window holds fewer), oldest first."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise WindowQueryError(f"frame count must be an integer >= 1, got {count!r}")
        with self._lock:
            return tuple(self._frames[-count:])

    def last_seconds(self, seconds: float, until_ns: int | None = None) -> tuple[Frame, ...]:
        """Frames stamped in ``[ref - seconds, ref]``, oldest first.

        ``ref`` is ``until_ns`` when given, else the newest frame's stamp, so a camera
        that stopped still answers with its last moments rather than nothing.
        """
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise WindowQueryError(f"seconds must be a finite number >= 0, got {seconds!r}")
        with self._lock:
            if not self._stamps:
                return ()
            ref = self._stamps[-1] if until_ns is None else int(until_ns)
            lo = bisect.bisect_left(self._stamps, ref - int(round(seconds * NS_PER_S)))
            hi = bisect.bisect_right(self._stamps, ref)
            return tuple(self._frames[lo:hi])

    def nearest(self, stamp_ns: int, tolerance_ns: int) -> Frame | None:
        """The frame whose stamp is closest to ``stamp_ns``, if within ``tolerance_ns``.

        On a tie the older frame wins, so the answer does not depend on arrival order.
        """
        if tolerance_ns < 0:
            raise WindowQueryError(f"tolerance must be >= 0 ns, got {tolerance_ns}")
        with self._lock:
            i = bisect.bisect_left(self._stamps, stamp_ns)
            best: Frame | None = None
            best_dist = tolerance_ns + 1
            for j in (i - 1, i):
                if 0 <= j < len(self._stamps):
                    dist = abs(self._stamps[j] - stamp_ns)
                    if dist < best_dist:
                        best, best_dist = self._frames[j], dist
            return best

    def stats(self) -> WindowStats:
        with self._lock:
            return WindowStats(
                frames=len(self._frames),
                bytes=self._bytes,
                oldest_ns=self._stamps[0] if self._stamps else None,
                newest_ns=self._stamps[-1] if self._stamps else None,
                evicted=self._evicted,
                stamp_resets=self._stamp_resets,
                stamp_outliers=self._stamp_outliers,
                limits=self._limits,
                depth_frames=len(self._depths),
                decoded_frames=len(self._decoded),
            )

