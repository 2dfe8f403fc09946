"""Attribute prompts: SAM 2 seeds that say *what* to segment (a colour, a shape), for training only.

The ``<SEG>`` seeds UniPixel's language model writes reach SAM 2 as two sparse prompt
tokens. A SAM 2 that learnt only clicks and boxes reads those tokens as places, and the
language model cannot learn to write a place from words in this budget (it sees the image
through relative positions only; the model card gives the figures). The ``attribute-seeds``
recipe therefore also teaches SAM 2 to segment an object from a learned token pair: the
first token its colour, the second its shape, either one "any" when the phrase leaves it
out ("the red shape", "the circle"). SAM 2's own features carry colour (a linear probe
reads it), so SAM 2 would do the grounding in the image; the language stages then teach
the seg head to write the pair the request's words name (a distillation term next to the
paper's mask losses). At this budget the variant scores lower than the default recipe
(model card), so it is an option, not the default.

The table is a training aid: inference never reads it (the node runs the published
architecture, whose seg head writes the seeds). It is saved next to the weights
(``attribute_prompts.safetensors``) so that a run continued from a checkpoint keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from unipixel_ros.synthetic import RequestKind, SyntheticRequest
from unipixel_ros.synthetic.requests import MIN_PROMPT_PIXELS
from unipixel_ros.synthetic.scenes import PALETTE, SHAPES, Video

ATTRIBUTE_FILE = "attribute_prompts.safetensors"
COLOURS: tuple[str, ...] = tuple(PALETTE)


@dataclass(frozen=True)
class Attributes:
    """What a phrase says of an object: its colour and / or shape (None = not said)."""

    colour: str | None
    shape: str | None

    def __post_init__(self) -> None:
        if self.colour is None and self.shape is None:
            raise ValueError("an attribute prompt names a colour, a shape or both")
        if self.colour is not None and self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}")
        if self.shape is not None and self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}")


class AttributePrompts(nn.Module):
    """Two learned SAM 2 prompt tokens per (colour, shape): ``[colour or any, shape or any]``."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        # Unit-variance rows: on the scale of SAM 2's own point tokens (sines and cosines plus an embedding).
        self.colour = nn.Parameter(torch.randn(len(COLOURS) + 1, dim, generator=generator))
        self.shape = nn.Parameter(torch.randn(len(SHAPES) + 1, dim, generator=generator))

    def tokens(self, attributes: list[Attributes]) -> torch.Tensor:
        """[K, 2, C] seeds for K objects (SAM 2's ``<SEG>`` slots take ``sam2_hidden_tokens`` = 2)."""
        colours = [COLOURS.index(a.colour) if a.colour else len(COLOURS) for a in attributes]
        shapes = [SHAPES.index(a.shape) if a.shape else len(SHAPES) for a in attributes]
        return torch.stack([self.colour[colours], self.shape[shapes]], dim=1)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / ATTRIBUTE_FILE
        save_file({"colour": self.colour.detach().cpu().contiguous(),
                   "shape": self.shape.detach().cpu().contiguous()}, str(path))
        return path

    @classmethod
    def load(cls, folder: str | Path, dim: int) -> "AttributePrompts | None":
        """The table saved in ``folder``, or None when it has none (e.g. a published checkpoint)."""
        path = Path(folder) / ATTRIBUTE_FILE
        if not path.is_file():
            return None
        state = load_file(str(path))
        prompts = cls(dim)
        if state["colour"].shape != prompts.colour.shape or state["shape"].shape != prompts.shape.shape:
            raise ValueError(f"{path} holds tables of shapes {tuple(state['colour'].shape)} / "
                             f"{tuple(state['shape'].shape)}, expected {tuple(prompts.colour.shape)} / "
                             f"{tuple(prompts.shape.shape)}")
        with torch.no_grad():
            prompts.colour.copy_(state["colour"].float())
            prompts.shape.copy_(state["shape"].float())
        return prompts


def naming_forms(video: Video, obj: int) -> list[Attributes]:
    """Every attribute pair that picks out ``obj`` alone in its scene (as the requests name it)."""
    objects = video.scene.objects
    me = objects[obj]
    forms = [Attributes(me.colour, me.shape)]
    if sum(o.colour == me.colour for o in objects) == 1:
        forms.append(Attributes(me.colour, None))
    if sum(o.shape == me.shape for o in objects) == 1:
        forms.append(Attributes(None, me.shape))
    return forms


def phrase_attributes(phrase: str) -> Attributes | None:
    """The colour and shape a referring phrase names ("the red shape" -> red, any), None if neither."""
    words = phrase.lower().replace(",", " ").split()
    colour = next((w for w in words if w in COLOURS), None)
    shape = next((w for w in words if w in SHAPES), None)
    return None if colour is None and shape is None else Attributes(colour, shape)


def request_attributes(request: SyntheticRequest) -> list[Attributes]:
    """The attribute seed of each object a text request names, in order.

    An attribute phrase gives what it says; a relation ("the shape left of the blue
    square") names its target by place, so the target's own colour and shape are the seed.
    """
    if request.prompts or request.expression is None:
        raise ValueError("attribute seeds are for text requests naming their objects")
    objects = request.video.scene.objects
    if request.kind is RequestKind.TEXT_REFERRING and not request.expression.startswith("the shape "):
        said = phrase_attributes(request.expression)
        return [said] if said is not None else [Attributes(objects[request.object_ids[0]].colour,
                                                           objects[request.object_ids[0]].shape)]
    return [Attributes(objects[o].colour, objects[o].shape) for o in request.object_ids]


@dataclass
class AttributeExample:
    """Objects of one clip, each seeded on frame 0 by attributes that pick it out."""

    frames: np.ndarray                 # [T, H, W, 3]
    attributes: list[Attributes]
    masks: list[np.ndarray]            # [T, H, W] each


def attribute_example(video: Video, rng: np.random.Generator, limit: int | None = None) -> AttributeExample | None:
    """The clip's objects well visible on frame 0, each named by one of its unique forms."""
    objects = [k for k in range(video.num_objects) if video.masks[k, 0].sum() >= MIN_PROMPT_PIXELS]
    if limit is not None and len(objects) > limit:
        objects = [int(k) for k in rng.choice(objects, size=limit, replace=False)]
    if not objects:
        return None
    attributes = []
    for k in objects:
        forms = naming_forms(video, k)
        attributes.append(forms[int(rng.integers(len(forms)))])
    return AttributeExample(video.images, attributes, [video.masks[k] for k in objects])
