"""Seeded synthetic scenes: coloured shapes moving over textured backgrounds, with exact masks.

The node, its tests and small training runs need camera frames in which the owner of
every pixel is known, without any data files. A :class:`Scene` is a small description
(shapes, their linear motion, a background texture, a seed); rendering frame ``t`` of it
is a pure function of that description, so a scene, a clip of it and an endless stream
of it are reproducible from a seed alone.

Pixel convention: pixel (column ``x``, row ``y``) belongs to a shape when the point
``(x, y)`` lies inside it (boundary included). Integer pixel coordinates are the sample
points, the same convention as SAM point prompts and image click coordinates, so a
point prompt at an object's centre lands on that object.

Objects are drawn in list order, later ones in front. An object's mask holds only its
visible pixels (what is left after the objects in front of it are drawn), so the masks of
one frame are disjoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import cv2
import numpy as np

# Colour names are the vocabulary of colour questions; the values are saturated so
# that they never look like the muted background textures.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 140, 25),
    "yellow": (240, 215, 40),
    "green": (45, 170, 65),
    "blue": (45, 90, 225),
    "purple": (140, 65, 190),
}

# Polygon outlines in units of an object's size (its half extent), image axes (y down).
# The diamond is narrower than it is tall, so it never looks like a rotated square.
_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]),
    "triangle": np.array([(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]),
    "diamond": np.array([(0.0, -1.0), (0.65, 0.0), (0.0, 1.0), (-0.65, 0.0)]),
    "hexagon": np.array([(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)]),
}
# Shape names are the vocabulary of shape questions.
SHAPES: tuple[str, ...] = ("circle", *_POLYGONS)
BACKGROUNDS: tuple[str, ...] = ("noise", "stripes", "gradient", "checker")

DEFAULT_WIDTH = 320
DEFAULT_HEIGHT = 240
# Random polygons are turned at most this much, so a square stays a square to the eye.
_MAX_RANDOM_ANGLE = math.radians(12)


class SceneError(ValueError):
    """A scene description that cannot be rendered (unknown name, object outside the image...)."""


def _shape_radius(shape: str) -> float:
    """Largest distance of the shape's outline from its centre, in units of its size."""
    if shape == "circle":
        return 1.0
    return float(np.linalg.norm(_POLYGONS[shape], axis=1).max())


def _reflect(value: float, low: float, high: float) -> float:
    """Where a point moving along a line ends up when it bounces between two walls."""
    span = high - low
    if span <= 0:
        return low
    u = (value - low) % (2 * span)
    return low + (2 * span - u if u > span else u)


@dataclass(frozen=True)
class SceneObject:
    """One shape: what it is, where it is on frame 0 and how it moves (pixels per frame)."""

    shape: str
    colour: str
    size: float
    position: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise SceneError(f"unknown shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.colour not in PALETTE:
            raise SceneError(f"unknown colour {self.colour!r}; known: {', '.join(PALETTE)}")
        if not self.size > 0:
            raise SceneError(f"object size must be positive, got {self.size}")

    @property
    def name(self) -> str:
        """How a person names the object: 'red circle'."""
        return f"{self.colour} {self.shape}"

    @property
    def extent(self) -> float:
        """Radius of the circle around the centre that holds the whole shape, in pixels."""
        return self.size * _shape_radius(self.shape)

    def outline(self) -> np.ndarray:
        """[N, 2] polygon vertices (x, y) in pixels relative to the centre, rotated by ``angle``."""
        if self.shape == "circle":
            raise SceneError("a circle has no polygon outline")
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        unit = _POLYGONS[self.shape]
        return self.size * np.stack(
            [unit[:, 0] * cos_a - unit[:, 1] * sin_a, unit[:, 0] * sin_a + unit[:, 1] * cos_a], axis=1
        )

    def mask_at(self, center: tuple[float, float], width: int, height: int) -> np.ndarray:
        """Boolean [height, width] mask of the whole shape centred at ``center`` (occlusion ignored)."""
        mask = np.zeros((height, width), dtype=bool)
        cx, cy = center
        reach = self.extent
        x0, x1 = max(0, math.floor(cx - reach)), min(width - 1, math.ceil(cx + reach))
        y0, y1 = max(0, math.floor(cy - reach)), min(height - 1, math.ceil(cy + reach))
        if x0 > x1 or y0 > y1:
            return mask
        xs = np.arange(x0, x1 + 1, dtype=np.float64)[None, :] - cx
        ys = np.arange(y0, y1 + 1, dtype=np.float64)[:, None] - cy
        if self.shape == "circle":
            inside = xs * xs + ys * ys <= self.size * self.size
        else:
            # Convex polygon: inside when on the inner side of every edge. The outlines
            # run clockwise on screen (y down), which makes the inner side positive.
            verts = self.outline()
            inside = np.ones((ys.shape[0], xs.shape[1]), dtype=bool)
            for (ax, ay), (bx, by) in zip(verts, np.roll(verts, -1, axis=0)):
                cross = (bx - ax) * (ys - ay) - (by - ay) * (xs - ax)
                inside &= cross >= -1e-9
        mask[y0 : y1 + 1, x0 : x1 + 1] = inside
        return mask


@dataclass(frozen=True)
class Background:
    """A muted texture that fills the frame behind the shapes."""

    kind: str
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    angle: float = 0.0
    period: float = 24.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in BACKGROUNDS:
            raise SceneError(f"unknown background {self.kind!r}; known: {', '.join(BACKGROUNDS)}")
        if not self.period > 0:
            raise SceneError(f"background period must be positive, got {self.period}")

    def render(self, width: int, height: int) -> np.ndarray:
        """Float32 [height, width, 3] RGB texture in 0..255."""
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        along = xs * math.cos(self.angle) + ys * math.sin(self.angle)
        if self.kind == "stripes":
            weight = (np.sin(2 * math.pi * along / self.period) > 0).astype(np.float32)
        elif self.kind == "gradient":
            weight = (along - along.min()) / max(float(along.max() - along.min()), 1.0)
        elif self.kind == "checker":
            cells = (np.floor(xs / self.period) + np.floor(ys / self.period)) % 2
            weight = cells.astype(np.float32)
        else:  # smooth value noise: random values on a coarse grid, interpolated
            rng = np.random.default_rng(self.seed)
            coarse = rng.random((max(2, int(height / self.period) + 2), max(2, int(width / self.period) + 2)))
            weight = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
            weight = np.clip(weight, 0.0, 1.0)
        first, second = (np.asarray(c, dtype=np.float32) for c in self.colours)
        return first + weight[..., None] * (second - first)


@dataclass(frozen=True)
class Frame:
    """One rendered frame and its ground truth.

    ``masks[k]`` holds the visible pixels of object ``k``; ``boxes[k]`` is their tight box
    (x_min, y_min, x_max, y_max), inclusive pixel indices as SAM draws boxes from masks,
    or all -1 when the object is hidden; ``centers[k]`` is the shape's geometric centre.
    """

    index: int
    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    centers: np.ndarray

    @property
    def visible(self) -> np.ndarray:
        """[K] bool: which objects have at least one visible pixel."""
        return self.masks.any(axis=(1, 2))


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight inclusive box (x_min, y_min, x_max, y_max) of a boolean mask; all -1 when empty."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return np.full(4, -1, dtype=np.int32)
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.int32)


@dataclass(frozen=True)
class Scene:
    """Shapes (drawn in list order, later in front) moving linearly over a background.

    Objects bounce off the image borders, so the scene can be rendered at any frame
    index and every shape stays whole inside the image. ``seed`` drives the per-frame
    sensor noise, so frame ``t`` is the same every time it is rendered.
    """

    width: int
    height: int
    objects: tuple[SceneObject, ...]
    background: Background
    seed: int = 0
    noise_std: float = 2.0

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise SceneError(f"image size must be at least 16x16, got {self.width}x{self.height}")
        if self.noise_std < 0:
            raise SceneError(f"noise_std must be >= 0, got {self.noise_std}")
        for k, obj in enumerate(self.objects):
            (x_lo, x_hi), (y_lo, y_hi) = self._arena(obj)
            x, y = obj.position
            if not (x_lo <= x <= x_hi and y_lo <= y <= y_hi):
                raise SceneError(
                    f"object {k} ({obj.name}, extent {obj.extent:.1f}px) at {obj.position} does not fit "
                    f"inside the {self.width}x{self.height} image; its centre must lie in "
                    f"x [{x_lo:.1f}, {x_hi:.1f}], y [{y_lo:.1f}, {y_hi:.1f}]"
                )

    def _arena(self, obj: SceneObject) -> tuple[tuple[float, float], tuple[float, float]]:
        """The range the object's centre may take so the whole shape stays in the image."""
        reach = obj.extent
        return (reach, self.width - 1 - reach), (reach, self.height - 1 - reach)

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    @cached_property
    def _background_pixels(self) -> np.ndarray:
        return self.background.render(self.width, self.height)

    def center(self, k: int, t: int) -> tuple[float, float]:
        """Centre of object ``k`` on frame ``t``: linear motion, reflected at the borders."""
        obj = self.objects[k]
        (x_lo, x_hi), (y_lo, y_hi) = self._arena(obj)
        return (
            _reflect(obj.position[0] + obj.velocity[0] * t, x_lo, x_hi),
            _reflect(obj.position[1] + obj.velocity[1] * t, y_lo, y_hi),
        )

    def full_mask(self, k: int, t: int) -> np.ndarray:
        """All pixels of object ``k`` on frame ``t``, including those hidden by objects in front."""
        return self.objects[k].mask_at(self.center(k, t), self.width, self.height)

    def render(self, t: int) -> Frame:
        """Frame ``t``: image, visible masks, boxes and centres."""
        image = self._background_pixels.copy()
        full = [self.full_mask(k, t) for k in range(self.num_objects)]
        for obj, mask in zip(self.objects, full):
            image[mask] = PALETTE[obj.colour]
        if self.noise_std > 0:
            noise_rng = np.random.default_rng((self.seed, t))
            image += noise_rng.normal(0.0, self.noise_std, image.shape).astype(np.float32)
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

        visible = np.zeros((self.num_objects, self.height, self.width), dtype=bool)
        covered = np.zeros((self.height, self.width), dtype=bool)
        for k in reversed(range(self.num_objects)):
            visible[k] = full[k] & ~covered
            covered |= full[k]
        boxes = (
            np.stack([mask_box(m) for m in visible]) if self.num_objects else np.zeros((0, 4), np.int32)
        )
        centers = np.array([self.center(k, t) for k in range(self.num_objects)], dtype=np.float64)
        return Frame(index=t, image=image, masks=visible, boxes=boxes, centers=centers.reshape(-1, 2))

    def video(self, num_frames: int, start: int = 0) -> Video:
        """Frames ``start .. start + num_frames - 1`` as a clip."""
        if num_frames < 1:
            raise SceneError(f"a video needs at least one frame, got num_frames={num_frames}")
        return Video.from_frames(self, [self.render(start + i) for i in range(num_frames)])


@dataclass(frozen=True)
class Video:
    """A clip of a scene with per-object, per-frame ground truth.

    images [T, H, W, 3] uint8 RGB; masks [K, T, H, W] bool (visible pixels);
    boxes [K, T, 4] int32 inclusive pixel boxes (-1 when hidden); centers [K, T, 2].
    """

    scene: Scene
    start: int
    images: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    centers: np.ndarray

    @classmethod
    def from_frames(cls, scene: Scene, frames: list[Frame]) -> Video:
        return cls(
            scene=scene,
            start=frames[0].index,
            images=np.stack([f.image for f in frames]),
            masks=np.stack([f.masks for f in frames], axis=1),
            boxes=np.stack([f.boxes for f in frames], axis=1),
            centers=np.stack([f.centers for f in frames], axis=1),
        )

    @property
    def num_frames(self) -> int:
        return self.images.shape[0]

    @property
    def num_objects(self) -> int:
        return self.masks.shape[0]

    @property
    def visible(self) -> np.ndarray:
        """[K, T] bool: which objects show at least one pixel on which frame."""
        return self.masks.any(axis=(2, 3))


def _random_background(rng: np.random.Generator) -> Background:
    """A muted, slightly tinted two-tone texture: far from every palette colour."""
    grey = rng.uniform(80.0, 170.0)
    tint = rng.uniform(-15.0, 15.0, size=3)
    first = np.clip(grey + tint, 0, 255)
    second = np.clip(first + rng.choice([-1.0, 1.0]) * rng.uniform(25.0, 50.0), 0, 255)
    return Background(
        kind=str(rng.choice(BACKGROUNDS)),
        colours=(tuple(int(c) for c in first), tuple(int(c) for c in second)),
        angle=float(rng.uniform(0.0, math.pi)),
        period=float(rng.uniform(10.0, 36.0)),
        seed=int(rng.integers(2**31)),
    )


def _start_range(low: float, high: float, travel: float) -> tuple[float, float]:
    """Start positions from which moving by ``travel`` stays inside [low, high]."""
    return low + max(0.0, -travel), high - max(0.0, travel)


def random_scene(
    rng: np.random.Generator | int,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    num_objects: int | None = None,
    num_frames: int | None = None,
    occlusion: bool = False,
) -> Scene:
    """Sample a scene of 2-5 shapes with distinct (colour, shape) names.

    With ``num_frames`` set, no shape reaches a border within that many frames, so its
    motion over the clip is a straight line (the velocity is exact ground truth). With
    ``occlusion``, one shape is placed so that it passes over another mid-clip.
    """
    rng = np.random.default_rng(rng)
    if num_objects is None:
        num_objects = int(rng.integers(2, 6))
    pairs = [(c, s) for c in PALETTE for s in SHAPES]
    if not 1 <= num_objects <= len(pairs):
        raise SceneError(f"num_objects must be in 1..{len(pairs)}, got {num_objects}")
    if occlusion and num_objects < 2:
        raise SceneError("occlusion needs at least two objects")
    if num_frames is not None and num_frames < 1:
        raise SceneError(f"num_frames must be >= 1, got {num_frames}")
    short = min(width, height)
    steps = (num_frames or 1) - 1
    max_speed = max(1.0, 0.04 * short)

    def sample_object(colour: str, shape: str) -> SceneObject:
        size = float(rng.uniform(0.08, 0.15) * short)
        angle = 0.0 if shape == "circle" else float(rng.uniform(-_MAX_RANDOM_ANGLE, _MAX_RANDOM_ANGLE))
        probe = SceneObject(shape, colour, size, (0.0, 0.0), angle=angle)
        reach = probe.extent
        speed = float(rng.uniform(1.0, max_speed))
        heading = float(rng.uniform(0.0, 2 * math.pi))
        velocity = [speed * math.cos(heading), speed * math.sin(heading)]
        position = []
        for axis, limit in enumerate((width, height)):
            low, high = reach, limit - 1 - reach
            if num_frames is not None and abs(velocity[axis]) * steps > high - low:
                velocity[axis] = math.copysign((high - low) / max(steps, 1), velocity[axis])
            lo, hi = _start_range(low, high, velocity[axis] * steps if num_frames else 0.0)
            position.append(float(rng.uniform(lo, hi)))
        return SceneObject(shape, colour, size, (position[0], position[1]), (velocity[0], velocity[1]), angle)

    chosen = rng.choice(len(pairs), size=num_objects, replace=False)
    objects = [sample_object(*pairs[i]) for i in chosen]
    if occlusion:
        objects = _place_crossing(rng, objects, width, height, num_frames)
    return Scene(
        width=width,
        height=height,
        objects=tuple(objects),
        background=_random_background(rng),
        seed=int(rng.integers(2**31)),
    )


def _place_crossing(
    rng: np.random.Generator, objects: list[SceneObject], width: int, height: int, num_frames: int | None
) -> list[SceneObject]:
    """Move a later (front) object onto a course that covers an earlier (back) one mid-clip."""
    steps = (num_frames or 9) - 1
    meet = steps // 2
    back, front = sorted(rng.choice(len(objects), size=2, replace=False))
    target = objects[back]
    meet_point = np.asarray(target.position) + meet * np.asarray(target.velocity)
    mover = objects[front]
    reach = mover.extent
    # Every outline holds the disc of radius 0.44 * size about its centre (the triangle's
    # slanted edges are the closest, at size / sqrt(5)), so centres this close overlap;
    # not much closer, so the back object stays partly in view.
    for _ in range(64):
        heading = rng.uniform(0.0, 2 * math.pi)
        reach_apart = rng.uniform(0.3, 0.44) * (target.size + mover.size)
        offset = reach_apart * np.array([math.cos(heading), math.sin(heading)])
        velocity = rng.uniform(-1.0, 1.0, size=2) * max(1.0, 0.04 * min(width, height))
        start = meet_point + offset - meet * velocity
        end = start + steps * velocity
        inside = all(
            reach <= p[axis] <= limit - 1 - reach
            for p in (start, end)
            for axis, limit in enumerate((width, height))
        )
        if inside:
            objects[front] = SceneObject(
                mover.shape, mover.colour, mover.size, (float(start[0]), float(start[1])),
                (float(velocity[0]), float(velocity[1])), mover.angle,
            )
            return objects
    # No course fits in the image: park the front object on the meeting point instead.
    x = float(np.clip(meet_point[0], reach, width - 1 - reach))
    y = float(np.clip(meet_point[1], reach, height - 1 - reach))
    objects[front] = SceneObject(mover.shape, mover.colour, mover.size, (x, y), target.velocity, mover.angle)
    return objects


def random_video(
    rng: np.random.Generator | int,
    num_frames: int | None = None,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    num_objects: int | None = None,
    occlusion: bool = False,
) -> Video:
    """A random clip: one frame (an image) or 4-8 frames when ``num_frames`` is not given."""
    rng = np.random.default_rng(rng)
    if num_frames is None:
        num_frames = int(rng.choice([1, 4, 5, 6, 7, 8]))
    scene = random_scene(rng, width, height, num_objects, num_frames, occlusion)
    return scene.video(num_frames)


# Depth of the synthetic RGB-D camera: every shape is a flat surface facing the camera, later
# (front) objects nearer, all in front of a flat background wall.
BACKGROUND_DEPTH_M = 3.0
FRONT_DEPTH_M = 1.0
DEPTH_STEP_M = 0.25


def object_depth_m(k: int, num_objects: int) -> float:
    """Depth [m] of object ``k`` of ``num_objects``: the last drawn (front) one at FRONT_DEPTH_M."""
    return FRONT_DEPTH_M + DEPTH_STEP_M * (num_objects - 1 - k)


def depth_image(frame: Frame, noise_m: float = 0.0, hole_fraction: float = 0.0,
                seed: int = 0) -> np.ndarray:
    """The depth [m, float32] registered to ``frame``: each object's visible pixels at its flat
    depth, the rest at BACKGROUND_DEPTH_M; optional Gaussian noise and holes (0 = no reading)
    drawn from (seed, frame index), so a frame's depth is the same every time."""
    if noise_m < 0 or not 0 <= hole_fraction < 1:
        raise SceneError(f"depth noise must be >= 0 and hole fraction in [0, 1), got {noise_m}, {hole_fraction}")
    depth = np.full(frame.image.shape[:2], BACKGROUND_DEPTH_M, np.float32)
    num = frame.masks.shape[0]
    for k in range(num):
        depth[frame.masks[k]] = object_depth_m(k, num)
    if noise_m > 0 or hole_fraction > 0:
        rng = np.random.default_rng((seed, frame.index, 1))
        if noise_m > 0:
            depth += rng.normal(0.0, noise_m, depth.shape).astype(np.float32)
        if hole_fraction > 0:
            depth[rng.random(depth.shape) < hole_fraction] = 0.0
    return depth


class SyntheticStream:
    """An endless camera stream: frame ``i`` depends only on (seed, i).

    Shapes bounce around one scene; with ``episode_frames`` > 0 a fresh scene (seeded by
    (seed, episode)) starts every ``episode_frames`` frames.
    """

    def __init__(
        self,
        seed: int,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        num_objects: int | None = None,
        episode_frames: int = 0,
    ) -> None:
        if episode_frames < 0:
            raise SceneError(f"episode_frames must be >= 0 (0: one scene forever), got {episode_frames}")
        if seed < 0:
            raise SceneError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.width = width
        self.height = height
        self.num_objects = num_objects
        self.episode_frames = episode_frames
        self._episode: tuple[int, Scene] | None = None

    def scene_at(self, index: int) -> tuple[Scene, int]:
        """The scene that frame ``index`` shows and the frame's time inside that scene."""
        if index < 0:
            raise SceneError(f"frame index must be >= 0, got {index}")
        episode, t = divmod(index, self.episode_frames) if self.episode_frames else (0, index)
        if self._episode is None or self._episode[0] != episode:
            rng = np.random.default_rng((self.seed, episode))
            self._episode = (episode, random_scene(rng, self.width, self.height, self.num_objects))
        return self._episode[1], t

    def frame(self, index: int) -> Frame:
        """Frame ``index`` of the stream, with its ground truth."""
        scene, t = self.scene_at(index)
        return scene.render(t)

    def index_of(self, image: np.ndarray, candidates: Iterable[int]) -> int | None:
        """The first candidate index whose frame is exactly ``image``, or None."""
        for index in candidates:
            if np.array_equal(self.frame(index).image, image):
                return index
        return None
