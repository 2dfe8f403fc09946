"""Pictures of object masks: the object-id label image and the colour overlay.

ROS-free so the node, the demo and the tests draw the same pictures.

* Label image: ``uint16``, one pixel = the memory-bank id of the object covering it, 0 =
  background (ids start at 1). Objects are painted in the order given, so where masks
  overlap the later one wins; the node passes them in increasing id order, so the newest
  object is on top. ``uint16`` is what ``mono16`` carries and what PNG stores losslessly.
* Overlay: the camera image in BGR (OpenCV's and RViz's ``bgr8``) with each visible
  object blended in its own colour, outlined, and tagged with its id and label (on a dark
  plate above the object, moved inside the picture and shortened with "..." where it
  would not fit); lost objects are listed in the top-left corner instead of being drawn.
"""
from __future__ import annotations

import colorsys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

MAX_LABEL_ID = int(np.iinfo(np.uint16).max)
OVERLAY_ALPHA = 0.5
_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949


class RenderError(ValueError):
    """A mask or id that cannot be drawn (wrong shape, id out of the label image's range)."""


@dataclass(frozen=True)
class OverlayObject:
    """One object as the overlay shows it."""

    object_id: int
    label: str
    mask: np.ndarray          # H x W bool
    lost: bool = False


def id_colour(object_id: int) -> tuple[int, int, int]:
    """A saturated BGR colour for an id; consecutive ids get far-apart hues (golden-ratio steps)."""
    hue = (object_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def _check_mask(mask: np.ndarray, shape: tuple[int, int], object_id: int) -> np.ndarray:
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise RenderError(f"mask of object {object_id} has shape {m.shape}, the image is {shape}")
    return m


def label_image(shape: tuple[int, int], masks: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
    """``uint16`` image of size ``shape`` (H, W): each pixel holds the id of its object, 0 = none."""
    labels = np.zeros(shape, dtype=np.uint16)
    for object_id, mask in masks:
        if not 1 <= object_id <= MAX_LABEL_ID:
            raise RenderError(f"object id {object_id} does not fit a 16-bit label image (1..{MAX_LABEL_ID})")
        labels[_check_mask(mask, shape, object_id)] = object_id
    return labels


def overlay(image_rgb: np.ndarray, objects: Sequence[OverlayObject], alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """BGR ``uint8`` picture of ``image_rgb`` (H x W x 3) with the objects drawn on it."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise RenderError(f"expected an RGB uint8 image (H, W, 3), got {image_rgb.dtype} {image_rgb.shape}")
    out = np.ascontiguousarray(image_rgb[..., ::-1])
    shape = out.shape[:2]
    font = _Font.for_image(shape)
    outline = max(1, int(round(min(shape) / 240)))
    tags: list[tuple[str, np.ndarray, tuple[int, int, int]]] = []
    lost: list[str] = []
    for obj in objects:
        mask = _check_mask(obj.mask, shape, obj.object_id)
        name = f"{obj.object_id} {obj.label}".strip()
        if obj.lost or not mask.any():
            lost.append(name)
            continue
        colour = id_colour(obj.object_id)
        blended = out[mask].astype(np.float32) * (1.0 - alpha) + np.float32(alpha) * np.float32(colour)
        out[mask] = np.round(blended).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, outline)
        tags.append((name, mask, colour))
    # The lost list first, so that tags of objects at the top go below it instead of over it.
    free_from = font.tag(out, "lost: " + ", ".join(lost), 0, 0, (255, 255, 255)) if lost else 0
    for text, mask, colour in tags:
        ys, xs = np.nonzero(mask)
        font.tag(out, text, int(xs.min()), int(ys.min()), colour, free_from)
    return out


@dataclass(frozen=True)
class _Font:
    """Tags: text on a dark plate, sized to the image, kept whole inside it.

    The Hershey font's word spaces are a few pixels wide at a readable size and vanish
    when it is drawn smaller or with a thick stroke, so the size has a floor and the
    stroke stays thin; a plate instead of a stroked outline keeps the spaces clear.
    """

    size: float
    thickness: int
    pad: int
    margin: int = 1
    face: int = cv2.FONT_HERSHEY_SIMPLEX
    ellipsis: str = "..."          # the Hershey fonts have ASCII glyphs only

    @classmethod
    def for_image(cls, shape: tuple[int, int]) -> _Font:
        size = max(0.4, min(shape) / 960)
        return cls(size=size, thickness=1 if size < 0.8 else 2, pad=max(1, int(round(3 * size))))

    def width(self, text: str) -> int:
        return cv2.getTextSize(text, self.face, self.size, self.thickness)[0][0]

    def fit(self, text: str, max_width: int) -> str:
        """``text``, or its longest prefix followed by an ellipsis, that is at most ``max_width``
        wide; empty when not even the ellipsis fits."""
        if self.width(text) <= max_width:
            return text
        for end in range(len(text) - 1, -1, -1):
            shortened = text[:end].rstrip() + self.ellipsis
            if self.width(shortened) <= max_width:
                return shortened
        return ""

    def tag(self, image: np.ndarray, text: str, x: int, top: int, colour: tuple[int, int, int],
            free_from: int = 0) -> int:
        """Draw ``text`` with its plate's left edge at ``x`` and its bottom just above row ``top``
        (below it where there is no room above row ``free_from``), moved and shortened to stay
        inside ``image``. Returns the first row below the plate (``free_from`` if nothing fits)."""
        height, width = image.shape[:2]
        text = self.fit(text, width - 2 * (self.margin + self.pad))
        (text_w, text_h), baseline = cv2.getTextSize(text, self.face, self.size, self.thickness)
        plate_w, plate_h = text_w + 2 * self.pad, text_h + baseline + 2 * self.pad
        first = max(free_from, self.margin)
        if not text or first + plate_h > height - self.margin:
            return free_from
        x0 = min(max(x, self.margin), width - self.margin - plate_w)
        y0 = top - plate_h if top - plate_h >= first else max(top, first)
        y0 = min(y0, height - self.margin - plate_h)
        cv2.rectangle(image, (x0, y0), (x0 + plate_w - 1, y0 + plate_h - 1), (0, 0, 0), cv2.FILLED)
        cv2.putText(image, text, (x0 + self.pad, y0 + self.pad + text_h), self.face, self.size, colour,
                    self.thickness, cv2.LINE_AA)
        return y0 + plate_h
