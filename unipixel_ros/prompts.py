"""Visual prompts, request validation and the question/answer text UniPixel was trained on.

This module is the one home of UniPixel's special token strings and of the text
formats around them. How the published checkpoints expect them:

* An object is named in the text as ``[k]`` (k = 0, 1, ...). An object that carries a
  point or box prompt is marked once, right after its first mention: ``[k] <|ref|>``;
  later mentions stay ``[k]``. The ``<|ref|>`` embedding is replaced by the encoded
  prompt, so there is exactly one ``<|ref|>`` per prompted object, in order of first
  mention.
* Segmenting named objects ("pre-fill" of the object memory): the question is wrapped as
  ``"<question> Please localize the relevant objects with IDs."`` and the assistant turn
  is ``"[0] <|seg|> [1] <|seg|>"`` (one ``[k] <|seg|>`` per object, space separated).
  The training text joins question and suffix as they are; the authors' inference ends
  the question with "." first. Inference here ends a question that has no sentence mark
  with "." and keeps one that ends in "?", "." or "!"
  (:func:`localize_objects_question_at_inference`); training keeps the trained text
  (:func:`localize_objects_question`).
* Free-text segmentation: the model writes ``<|seg|>`` itself; the request styles below
  are the phrasings it was trained on.
* ``<|mem|>`` appears only in the object-memory prefix built by :mod:`unipixel_ros.memory`.

Prompt types are plain frozen dataclasses (no ROS), with pixel coordinates of the
original camera image and ``frame_index`` into the request's frame window.
:class:`RequestLimits` bounds how big one request may be, because one request holds the
model, and with it every other query, click and tracking step, until it is done.
"""
from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

REF_TOKEN = "<|ref|>"
SEG_TOKEN = "<|seg|>"
MEM_TOKEN = "<|mem|>"
SPECIAL_TOKENS: tuple[str, str, str] = (REF_TOKEN, SEG_TOKEN, MEM_TOKEN)

# "[k]" in user text names object k.
OBJECT_REFERENCE = re.compile(r"\[(\d+)\]")
_REF_MARK = re.compile(r"\[(\d+)\] " + re.escape(REF_TOKEN))

LOCALIZE_OBJECTS_SUFFIX = "Please localize the relevant objects with IDs."
SENTENCE_MARKS: tuple[str, ...] = ("?", ".", "!")

DEFAULT_MAX_PROMPTS = 16
DEFAULT_MAX_TEXT_TOKENS = 1024
DEFAULT_MAX_PROMPT_PIXELS = 4 * 3840 * 2160      # four 4K (UHD) mask images


class PromptError(ValueError):
    """A request's text or visual prompts cannot be given to the model as they are."""


@dataclass(frozen=True)
class RequestLimits:
    """The largest request the model takes: visual prompts, text tokens (the model's
    tokenizer counts them) and pixels of the mask prompts together (the node decodes
    each mask image before anything else runs).

    The refusals name the node parameters that set each bound (``query.max_prompts``,
    ``query.max_text_tokens``, ``query.max_prompt_pixels``).
    """

    max_prompts: int = DEFAULT_MAX_PROMPTS
    max_text_tokens: int = DEFAULT_MAX_TEXT_TOKENS
    max_prompt_pixels: int = DEFAULT_MAX_PROMPT_PIXELS

    def __post_init__(self) -> None:
        for name in ("max_prompts", "max_text_tokens", "max_prompt_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def check_prompt_count(self, count: int) -> None:
        if count > self.max_prompts:
            raise PromptError(f"{count} visual prompts in one request; at most {self.max_prompts} are "
                              "allowed (query.max_prompts)")

    def check_text_tokens(self, tokens: int) -> None:
        if tokens > self.max_text_tokens:
            raise PromptError(f"the text is {tokens} tokens long; at most {self.max_text_tokens} are allowed "
                              "(query.max_text_tokens)")

    def check_prompt_pixels(self, pixels: int) -> None:
        if pixels > self.max_prompt_pixels:
            raise PromptError(f"the mask prompts hold {pixels} pixels; at most {self.max_prompt_pixels} per "
                              "request are allowed (query.max_prompt_pixels)")


DEFAULT_LIMITS = RequestLimits()


@dataclass(frozen=True, kw_only=True)
class PointPrompt:
    """A clicked point (pixel coordinates, x right, y down) on one frame of the window.

    UniPixel was trained with one positive point per object; negative points are
    representable (the ROS message has a label) but rejected by :func:`validate_request`.
    """

    object_index: int
    frame_index: int
    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True, kw_only=True)
class BoxPrompt:
    """An axis-aligned box given by its top-left (x0, y0) and bottom-right (x1, y1) corners."""

    object_index: int
    frame_index: int
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, kw_only=True, eq=False)
class MaskPrompt:
    """A binary mask (H x W, True = object) drawn on one frame of the window.

    Compared by identity: array equality is not a boolean.
    """

    object_index: int
    frame_index: int
    mask: np.ndarray


@dataclass(frozen=True, kw_only=True)
class MemoryPrompt:
    """Object ``[k]`` is an object already in the memory bank: its stored masks on the
    window's frames stand in for a drawn mask (follow-up questions about kept objects)."""

    object_index: int
    memory_id: int


VisualPrompt = PointPrompt | BoxPrompt | MaskPrompt | MemoryPrompt


class SegmentationStyle(enum.Enum):
    """Request phrasings UniPixel was trained on for free-text segmentation.

    The value is a ``str.format`` template with one ``{}`` for the user's text.
    """

    SENTENCE = "{} Please provide the segmentation mask."
    QUESTION = "{} Please answer the question and provide the segmentation mask."
    EXPLANATORY = "{} Please provide the segmentation mask and explain why."
    DESCRIPTION = "Please segment the object according to the description: {}"


def referenced_objects(text: str) -> tuple[int, ...]:
    """Object indices named as ``[k]`` in ``text``, in order of first mention, without repeats."""
    seen: dict[int, None] = {}
    for match in OBJECT_REFERENCE.finditer(text):
        seen.setdefault(int(match.group(1)), None)
    return tuple(seen)


def _ref_prompted(prompts: Iterable[VisualPrompt]) -> list[PointPrompt | BoxPrompt]:
    return [p for p in prompts if isinstance(p, (PointPrompt, BoxPrompt))]


def ref_token_objects(question: str) -> tuple[int, ...]:
    """Object index of each ``<|ref|>`` token in a composed question, in token order."""
    return tuple(int(m.group(1)) for m in _REF_MARK.finditer(question))


def order_ref_prompts(question: str, prompts: Iterable[VisualPrompt]) -> list[PointPrompt | BoxPrompt]:
    """The point/box prompts in the order of the ``<|ref|>`` tokens of ``question``.

    The encoded prompts replace the ``<|ref|>`` token embeddings in sequence order, so
    this is the order in which the model must encode them.
    """
    by_object = {p.object_index: p for p in _ref_prompted(prompts)}
    order = ref_token_objects(question)
    missing = sorted(set(by_object) - set(order))
    if missing:
        raise PromptError(f"the question has no {REF_TOKEN} for [{missing[0]}]")
    unknown = [k for k in order if k not in by_object]
    if unknown:
        raise PromptError(f"the question marks [{unknown[0]}] with {REF_TOKEN} but it has no point or box prompt")
    return [by_object[k] for k in order]


def insert_ref_tokens(text: str, object_indices: Iterable[int]) -> str:
    """Append `` <|ref|>`` to the first mention ``[k]`` of each listed object."""
    pending = set(object_indices)

    def mark(match: re.Match[str]) -> str:
        k = int(match.group(1))
        if k in pending:
            pending.discard(k)
            return f"{match.group(0)} {REF_TOKEN}"
        return match.group(0)

    marked = OBJECT_REFERENCE.sub(mark, text)
    if pending:
        missing = ", ".join(f"[{k}]" for k in sorted(pending))
        raise PromptError(f"cannot mark {missing} with {REF_TOKEN}: the text does not name it")
    return marked


def compose_question(text: str, prompts: Sequence[VisualPrompt]) -> str:
    """The user question with ``<|ref|>`` after each point/box-prompted object.

    An empty text (a bare click or box) becomes the list of prompted objects,
    ``"[0] [1]"``, so the result is ``"[0] <|ref|> [1] <|ref|>"``.
    """
    text = text.strip()
    if not text:
        text = " ".join(f"[{k}]" for k in sorted({p.object_index for p in prompts}))
    return insert_ref_tokens(text, (p.object_index for p in _ref_prompted(prompts)))


def localize_objects_question(question: str) -> str:
    """Wrap a question for segmenting its named objects (the memory pre-fill pass), as the
    training text does: question and suffix joined by a space, nothing added."""
    return f"{question} {LOCALIZE_OBJECTS_SUFFIX}"


def localize_objects_question_at_inference(question: str) -> str:
    """The pre-fill pass question as inference asks it: the authors' inference puts "." after
    the question; a question that already ends in a sentence mark ("?", ".", "!") keeps it
    alone, so "What is [0] <|ref|>?" does not become "?."."""
    question = question.rstrip()
    if not question.endswith(SENTENCE_MARKS):
        question += "."
    return localize_objects_question(question)


def segmentation_answer(object_indices: Iterable[int]) -> str:
    """The assistant turn that asks for one mask per object: ``"[0] <|seg|> [1] <|seg|>"``."""
    return " ".join(f"[{k}] {SEG_TOKEN}" for k in object_indices)


def segmentation_request(text: str, style: SegmentationStyle = SegmentationStyle.SENTENCE) -> str:
    """Free-text segmentation request in one of the trained phrasings."""
    return style.value.format(text.strip())


def _is_finite(*values: float) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_numbers(prompt: VisualPrompt, name: str) -> None:
    """Every numeric field has the type the model's arithmetic needs (indices are integers)."""
    integers = {"object index": prompt.object_index}
    integers.update({"memory id": prompt.memory_id} if isinstance(prompt, MemoryPrompt)
                    else {"frame index": prompt.frame_index})
    for field_name, value in integers.items():
        if not _is_integer(value):
            raise PromptError(f"{name}: {field_name} must be an integer, got {value!r}")
    coordinates = {PointPrompt: ("x", "y"), BoxPrompt: ("x0", "y0", "x1", "y1")}.get(type(prompt), ())
    for field_name in coordinates:
        value = getattr(prompt, field_name)
        if not _is_real(value):
            raise PromptError(f"{name}: {field_name} must be a number, got {value!r}")


def _check_prompt(prompt: VisualPrompt, num_frames: int, width: int, height: int) -> None:
    k = prompt.object_index
    name = f"prompt for [{k}]"
    _check_numbers(prompt, name)
    if k < 0:
        raise PromptError(f"object index must be >= 0, got {k}")
    if isinstance(prompt, MemoryPrompt):
        if prompt.memory_id < 1:
            raise PromptError(f"{name}: memory id must be >= 1, got {prompt.memory_id}")
        return
    if not 0 <= prompt.frame_index < num_frames:
        raise PromptError(
            f"{name}: frame index {prompt.frame_index} is outside the window of {num_frames} frames")
    if isinstance(prompt, PointPrompt):
        if not _is_finite(prompt.x, prompt.y):
            raise PromptError(f"{name}: point has a NaN or infinite coordinate ({prompt.x}, {prompt.y})")
        if not prompt.positive:
            raise PromptError(f"{name}: negative points are not supported; UniPixel takes one positive point")
        if not (0 <= prompt.x < width and 0 <= prompt.y < height):
            raise PromptError(
                f"{name}: point ({prompt.x}, {prompt.y}) is outside the {width}x{height} image")
    elif isinstance(prompt, BoxPrompt):
        corners = (prompt.x0, prompt.y0, prompt.x1, prompt.y1)
        if not _is_finite(*corners):
            raise PromptError(f"{name}: box has a NaN or infinite coordinate {corners}")
        if not (0 <= prompt.x0 <= width and 0 <= prompt.x1 <= width
                and 0 <= prompt.y0 <= height and 0 <= prompt.y1 <= height):
            raise PromptError(f"{name}: box {corners} is outside the {width}x{height} image")
        if prompt.x1 <= prompt.x0 or prompt.y1 <= prompt.y0:
            raise PromptError(f"{name}: box {corners} has zero area (needs x0 < x1 and y0 < y1)")
    elif isinstance(prompt, MaskPrompt):
        mask = np.asarray(prompt.mask)
        if mask.shape != (height, width):
            raise PromptError(
                f"{name}: mask has size {mask.shape}, expected (height, width) = ({height}, {width})")
        if not mask.any():
            raise PromptError(f"{name}: mask is empty")
    else:
        raise PromptError(f"unknown prompt type {type(prompt).__name__}")


def prompt_pixels(prompts: Iterable[VisualPrompt]) -> int:
    """Pixels of the mask prompts together (what :attr:`RequestLimits.max_prompt_pixels` bounds)."""
    return sum(int(np.asarray(p.mask).size) for p in prompts if isinstance(p, MaskPrompt))


def validate_request(text: str, prompts: Sequence[VisualPrompt], num_frames: int, width: int,
                     height: int, limits: RequestLimits = DEFAULT_LIMITS) -> None:
    """Reject a request the model cannot answer as asked; the message names the problem.

    Rules: at least one frame; text or prompts; at most ``limits.max_prompts`` prompts whose
    masks hold at most ``limits.max_prompt_pixels`` pixels; user text does not contain the
    special tokens; indices are integers; prompts are finite and inside the image (points
    in [0, W) x [0, H), box corners in [0, W] x [0, H] with x0 < x1 and y0 < y1, masks
    H x W and non-empty); one prompt per object; when the text is not empty, it names
    every prompted object as ``[k]`` and every object it names has a prompt (if any
    prompts are given). The text's token count is the pipeline's to check: it owns the
    tokenizer.
    """
    limits.check_prompt_count(len(prompts))
    limits.check_prompt_pixels(prompt_pixels(prompts))
    if num_frames < 1:
        raise PromptError("no frames: the camera window is empty")
    if width < 1 or height < 1:
        raise PromptError(f"image size must be positive, got {width}x{height}")
    for token in SPECIAL_TOKENS:
        if token in text:
            raise PromptError(f"text must not contain the reserved token {token}")
    if not text.strip() and not prompts:
        raise PromptError("empty request: give a text, a visual prompt, or both")

    seen: dict[int, VisualPrompt] = {}
    for prompt in prompts:
        _check_prompt(prompt, num_frames, width, height)
        k = prompt.object_index
        if k in seen:
            raise PromptError(
                f"two prompts for [{k}] ({type(seen[k]).__name__} and {type(prompt).__name__}); "
                "give one point, box or mask per object")
        seen[k] = prompt

    if not text.strip() or not prompts:
        return
    named = referenced_objects(text)
    unnamed = sorted(set(seen) - set(named))
    if unnamed:
        names = " ".join(f"[{k}]" for k in named) or "no object"
        raise PromptError(
            f"prompt for [{unnamed[0]}] but the text names {'only ' if named else ''}{names}; "
            f"write [{unnamed[0]}] where the object belongs in the text")
    unprompted = [k for k in named if k not in seen]
    if unprompted:
        raise PromptError(f"the text names [{unprompted[0]}] but no prompt is given for it")
