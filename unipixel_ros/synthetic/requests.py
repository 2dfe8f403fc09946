"""Requests about synthetic clips, with their exact ground truth.

Every kind of request the node serves can be drawn from a seed: text referring
("Please segment the shape to the left of the blue square."), a point or box prompt with
a question ("What colour is [0]?"), several objects in one request, and PixelQA
questions whose answer needs the object's masks over the whole clip (the object memory:
pre-fill, then injection). Each request carries the masks it should produce (per object,
per frame) and, for questions, the expected answer text; :func:`answer_matches` compares
a model's answer with it by the vocabulary words both contain.

Prompt coordinates follow the scene's pixel convention (integer pixel coordinates are
the sample points); a box is the tight box of the visible mask, corners as inclusive
pixel indices, as SAM derives boxes from masks.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np

from unipixel_ros.mask_points import border_distance
from unipixel_ros.prompts import BoxPrompt, PointPrompt, VisualPrompt

from .scenes import DEFAULT_HEIGHT, DEFAULT_WIDTH, PALETTE, SHAPES, Video, random_video

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
RELATIONS: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}
# Fewer hidden pixels than this do not count as "covered" (a person would not see it).
MIN_COVERED_PIXELS = 20
# A prompted object shows at least this many pixels on the prompt frame.
MIN_PROMPT_PIXELS = 20
# "Closest" only when the runner-up is this many times farther away.
CLOSEST_MARGIN = 1.3
# "Moves left" only when the clip-long displacement is mostly horizontal and this long.
MIN_DIRECTION_PIXELS = 8.0


class RequestKind(str, enum.Enum):
    TEXT_REFERRING = "text_referring"
    POINT_QUESTION = "point_question"
    BOX_QUESTION = "box_question"
    MULTI_OBJECT = "multi_object"
    PIXEL_QA = "pixel_qa"


class RequestUnavailable(ValueError):
    """The clip cannot support this kind of request (e.g. no relation names one object)."""


@dataclass(frozen=True)
class SyntheticRequest:
    """A request and its ground truth.

    ``object_ids[j]`` is the scene object that answer object ``j`` is: the one prompted
    as ``[j]``, or the j-th one named in the text. ``expression`` is the bare referring
    phrase of a text-referring request ("the red circle"), for callers that phrase the
    request themselves. ``answer`` is the expected answer text, None when only masks
    are asked for.
    """

    kind: RequestKind
    text: str
    prompts: tuple[VisualPrompt, ...]
    object_ids: tuple[int, ...]
    video: Video
    answer: str | None = None
    expression: str | None = None

    @property
    def masks(self) -> np.ndarray:
        """[N, T, H, W] bool: the expected mask of each answer object on each frame."""
        return self.video.masks[list(self.object_ids)]


# ----------------------------------------------------------------- answers

_LABELS: dict[str, tuple[str, ...]] = {
    "colour": tuple(PALETTE),
    "shape": SHAPES,
    "direction": DIRECTIONS,
    "yes_no": ("yes", "no"),
}
_SYNONYMS: dict[str, str] = {
    "violet": "purple",
    "disc": "circle",
    "disk": "circle",
    "rhombus": "diamond",
    "leftward": "left",
    "leftwards": "left",
    "rightward": "right",
    "rightwards": "right",
    "upward": "up",
    "upwards": "up",
    "downward": "down",
    "downwards": "down",
}
_CATEGORY: dict[str, str] = {label: cat for cat, labels in _LABELS.items() for label in labels}
_ARTICLES = {"a", "an", "the"}


def _canonical(word: str) -> str:
    """A word's vocabulary label when it is one (plural or synonym allowed), else the word."""
    word = _SYNONYMS.get(word, word)
    if word not in _CATEGORY and word.endswith("s") and word[:-1] in _CATEGORY:
        word = word[:-1]
    return word


def normalise_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, vocabulary words in their canonical form."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    return " ".join(_canonical(w) for w in words if w not in _ARTICLES)


def answer_labels(text: str, categories: set[str] | None = None) -> list[str]:
    """The vocabulary words of ``text`` in order (colours, shapes, directions, yes/no)."""
    labels = [w for w in normalise_answer(text).split() if w in _CATEGORY]
    return [w for w in labels if categories is None or _CATEGORY[w] in categories]


def answer_matches(predicted: str, expected: str) -> bool:
    """True when ``predicted`` names the same labels, in order, as ``expected``.

    Only the kinds of label the expected answer uses are compared, so "It is a red
    circle." answers "What shape is [0]?" (expected "circle") correctly.
    """
    wanted = answer_labels(expected)
    if not wanted:
        raise ValueError(f"expected answer {expected!r} names no colour, shape, direction or yes/no")
    return answer_labels(predicted, {_CATEGORY[w] for w in wanted}) == wanted


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ----------------------------------------------------------------- geometry


def relation_holds(target_box: np.ndarray, anchor_box: np.ndarray, relation: str) -> bool:
    """Whether the target lies wholly on one side of the anchor (inclusive pixel boxes)."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; known: {', '.join(RELATIONS)}")
    if target_box[0] < 0 or anchor_box[0] < 0:
        return False
    tx0, ty0, tx1, ty1 = target_box
    ax0, ay0, ax1, ay1 = anchor_box
    return {
        "left": tx1 < ax0,
        "right": tx0 > ax1,
        "above": ty1 < ay0,
        "below": ty0 > ay1,
    }[relation]


def _interior_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A pixel well inside the mask (at least half the deepest distance from its edge)."""
    depth = border_distance(mask, 3)
    ys, xs = np.nonzero(depth >= 0.5 * depth.max())
    pick = int(rng.integers(len(xs)))
    return int(xs[pick]), int(ys[pick])


def _make_prompt(
    video: Video, obj: int, index: int, kind: str, rng: np.random.Generator, frame: int | None = None
) -> VisualPrompt:
    """A point or box prompt on object ``obj`` as ``[index]``, on a frame where it is well visible."""
    if frame is None:
        areas = video.masks[obj].sum(axis=(1, 2))
        frames = np.flatnonzero(areas >= MIN_PROMPT_PIXELS)
        if frames.size == 0:
            raise RequestUnavailable(f"object {obj} is never visible enough to be prompted")
        frame = int(rng.choice(frames))
    if kind == "point":
        x, y = _interior_point(video.masks[obj, frame], rng)
        return PointPrompt(object_index=index, frame_index=frame, x=float(x), y=float(y))
    x0, y0, x1, y1 = (float(v) for v in video.boxes[obj, frame])
    return BoxPrompt(object_index=index, frame_index=frame, x0=x0, y0=y0, x1=x1, y1=y1)


def _unique_names(video: Video, obj: int) -> list[str]:
    """Referring phrases that pick out object ``obj`` alone among the scene's objects."""
    objects = video.scene.objects
    me = objects[obj]
    names = [f"the {me.colour} {me.shape}"]
    if sum(o.colour == me.colour for o in objects) == 1:
        names.append(f"the {me.colour} shape")
    if sum(o.shape == me.shape for o in objects) == 1:
        names.append(f"the {me.shape}")
    return names


def _relation_target(video: Video, anchor: int, relation: str) -> int | None:
    """The one object in ``relation`` to ``anchor`` on every frame, if there is exactly one."""
    found: set[int] | None = None
    for t in range(video.num_frames):
        here = {
            o
            for o in range(video.num_objects)
            if o != anchor and relation_holds(video.boxes[o, t], video.boxes[anchor, t], relation)
        }
        if found is not None and here != found:
            return None
        found = here
    if found is None or len(found) != 1:
        return None
    (target,) = found
    return target if video.visible[target].all() and video.visible[anchor].all() else None


# ----------------------------------------------------------------- request kinds

_SEGMENT_TEMPLATES = ("Please segment {}.", "Segment {}.", "Can you segment {}?")


def text_referring_request(video: Video, rng: np.random.Generator) -> SyntheticRequest:
    """Segment one object named by a unique attribute or by its place relative to another."""
    options: list[tuple[int, str]] = []
    for obj in np.flatnonzero(video.visible[:, 0]):
        options += [(int(obj), name) for name in _unique_names(video, int(obj))]
    for anchor in range(video.num_objects):
        for relation, phrase in RELATIONS.items():
            target = _relation_target(video, anchor, relation)
            if target is not None:
                anchor_name = _unique_names(video, anchor)[0]
                options.append((target, f"the shape {phrase} {anchor_name}"))
    relational = [o for o in options if o[1].startswith("the shape ")]
    # Relations are rarer than attributes; offer them half the time when there are any.
    pool = relational if relational and rng.random() < 0.5 else options
    if not pool:
        raise RequestUnavailable("no object is visible on the first frame")
    obj, expression = pool[int(rng.integers(len(pool)))]
    text = str(rng.choice(_SEGMENT_TEMPLATES)).format(expression)
    return SyntheticRequest(RequestKind.TEXT_REFERRING, text, (), (obj,), video, expression=expression)


_QUESTIONS = {
    "colour": ("What colour is [0]?", lambda o: o.colour),
    "shape": ("What shape is [0]?", lambda o: o.shape),
    "name": ("What is [0]?", lambda o: _with_article(o.name)),
}


def prompt_question_request(video: Video, rng: np.random.Generator, prompt_kind: str) -> SyntheticRequest:
    """A point or box on one object and a question about its colour or shape."""
    candidates = np.flatnonzero(video.masks.sum(axis=(2, 3)).max(axis=1) >= MIN_PROMPT_PIXELS)
    if candidates.size == 0:
        raise RequestUnavailable("no object is visible enough to be prompted")
    obj = int(rng.choice(candidates))
    question, answer_of = _QUESTIONS[str(rng.choice(list(_QUESTIONS)))]
    prompt = _make_prompt(video, obj, 0, prompt_kind, rng)
    kind = RequestKind.POINT_QUESTION if prompt_kind == "point" else RequestKind.BOX_QUESTION
    return SyntheticRequest(kind, question, (prompt,), (obj,), video, answer=answer_of(video.scene.objects[obj]))


def multi_object_request(video: Video, rng: np.random.Generator) -> SyntheticRequest:
    """Two or three objects in one request: named in the text, or prompted and asked about."""
    if rng.random() < 0.5:
        named = np.flatnonzero(video.visible[:, 0])
        if named.size < 2:
            raise RequestUnavailable("fewer than two objects are visible on the first frame")
        objs = [int(o) for o in rng.choice(named, size=min(named.size, int(rng.integers(2, 4))), replace=False)]
        expression = _and_list([_unique_names(video, o)[0] for o in objs])
        text = str(rng.choice(_SEGMENT_TEMPLATES)).format(expression)
        return SyntheticRequest(RequestKind.MULTI_OBJECT, text, (), tuple(objs), video, expression=expression)

    prompted = np.flatnonzero(video.masks.sum(axis=(2, 3)).max(axis=1) >= MIN_PROMPT_PIXELS)
    if prompted.size < 2:
        raise RequestUnavailable("fewer than two objects are visible enough to be prompted")
    objs = [int(o) for o in rng.choice(prompted, size=min(prompted.size, int(rng.integers(2, 4))), replace=False)]
    prompts = tuple(_make_prompt(video, o, j, str(rng.choice(["point", "box"])), rng) for j, o in enumerate(objs))
    refs = [f"[{j}]" for j in range(len(objs))]
    attribute = str(rng.choice(["colour", "shape"]))
    values = [getattr(video.scene.objects[o], attribute) for o in objs]
    text = f"What {attribute}s are {_and_list(refs)}?"
    said = [_with_article(v) if attribute == "shape" else v for v in values]
    answer = _and_list([f"{ref} is {v}" for ref, v in zip(refs, said)]) + "."
    return SyntheticRequest(RequestKind.MULTI_OBJECT, text, prompts, tuple(objs), video, answer=answer)


def _covered_pixels(video: Video, obj: int) -> np.ndarray:
    """[K] most pixels of ``obj`` that each object in front of it hides on any one frame."""
    scene = video.scene
    covered = np.zeros(video.num_objects, dtype=np.int64)
    for t in range(video.num_frames):
        mine = scene.full_mask(obj, video.start + t)
        for other in range(obj + 1, video.num_objects):
            hidden = int((mine & scene.full_mask(other, video.start + t)).sum())
            covered[other] = max(covered[other], hidden)
    return covered


def _pixel_qa_questions(video: Video, obj: int) -> list[tuple[str, str]]:
    """(question, answer) pairs about object ``obj`` that need its masks over the clip."""
    objects = video.scene.objects
    span = "during the video" if video.num_frames > 1 else "in the image"
    questions: list[tuple[str, str]] = []

    covered = _covered_pixels(video, obj)
    if not covered.any():
        questions.append((f"Is [0] partly hidden behind another shape {span}?", "no"))
    elif covered.max() >= MIN_COVERED_PIXELS:
        questions.append((f"Is [0] partly hidden behind another shape {span}?", "yes"))
        if np.count_nonzero(covered) == 1:
            coverer = objects[int(np.argmax(covered))]
            questions.append((f"Which shape covers part of [0] {span}?", f"the {coverer.name}"))

    if video.num_frames > 1:
        dx, dy = video.centers[obj, -1] - video.centers[obj, 0]
        steps = np.diff(video.centers[obj], axis=0)
        major, minor, axis = (abs(dx), abs(dy), 0) if abs(dx) >= abs(dy) else (abs(dy), abs(dx), 1)
        straight = np.all(np.sign(steps[:, axis]) == np.sign(steps[0, axis]))
        if major >= MIN_DIRECTION_PIXELS and major >= 2 * minor and straight:
            direction = ("right" if dx > 0 else "left") if axis == 0 else ("down" if dy > 0 else "up")
            questions.append(("In which direction does [0] move in the video?", direction))

    last = video.num_frames - 1
    others = [o for o in range(video.num_objects) if o != obj and video.visible[o, last]]
    if video.visible[obj, last] and others:
        dist = sorted(
            (float(np.linalg.norm(video.centers[o, last] - video.centers[obj, last])), o) for o in others
        )
        if len(dist) == 1 or dist[1][0] >= CLOSEST_MARGIN * dist[0][0]:
            where = "in the last frame" if video.num_frames > 1 else "in the image"
            questions.append((f"Which shape is closest to [0] {where}?", f"the {objects[dist[0][1]].name}"))
    return questions


def pixel_qa_request(video: Video, rng: np.random.Generator) -> SyntheticRequest:
    """A prompted object and a question about its whole track (occlusion, motion, neighbours)."""
    for obj in rng.permutation(video.num_objects):
        obj = int(obj)
        if video.masks[obj].sum(axis=(1, 2)).max() < MIN_PROMPT_PIXELS:
            continue
        questions = _pixel_qa_questions(video, obj)
        if questions:
            # Yes/no questions fit almost every object; give the others a fair share.
            weights = np.array([0.5 if a in ("yes", "no") else 1.0 for _, a in questions])
            question, answer = questions[int(rng.choice(len(questions), p=weights / weights.sum()))]
            prompt = _make_prompt(video, obj, 0, str(rng.choice(["point", "box"])), rng)
            return SyntheticRequest(RequestKind.PIXEL_QA, question, (prompt,), (obj,), video, answer=answer)
    raise RequestUnavailable("no object has an unambiguous question about its track")


def make_request(kind: RequestKind | str, video: Video, rng: np.random.Generator | int) -> SyntheticRequest:
    """A request of ``kind`` about ``video``; raises RequestUnavailable when the clip cannot support it."""
    kind = RequestKind(kind)
    rng = np.random.default_rng(rng)
    if kind is RequestKind.TEXT_REFERRING:
        return text_referring_request(video, rng)
    if kind is RequestKind.POINT_QUESTION:
        return prompt_question_request(video, rng, "point")
    if kind is RequestKind.BOX_QUESTION:
        return prompt_question_request(video, rng, "box")
    if kind is RequestKind.MULTI_OBJECT:
        return multi_object_request(video, rng)
    return pixel_qa_request(video, rng)


def random_request(
    rng: np.random.Generator | int,
    kind: RequestKind | str | None = None,
    num_frames: int | None = None,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    max_attempts: int = 100,
) -> SyntheticRequest:
    """A random request (of ``kind``, or any kind) about a freshly drawn clip."""
    rng = np.random.default_rng(rng)
    for _ in range(max_attempts):
        chosen = RequestKind(kind) if kind is not None else RequestKind(rng.choice([k.value for k in RequestKind]))
        occlusion = chosen is RequestKind.PIXEL_QA and bool(rng.random() < 0.5)
        video = random_video(rng, num_frames, width, height, occlusion=occlusion)
        try:
            return make_request(chosen, video, rng)
        except RequestUnavailable:
            continue
    raise RequestUnavailable(f"no {kind or 'request'} could be drawn in {max_attempts} clips")
