"""Pictures of object masks: the object-id label image and the colour overlay.

ROS-free so the node, the demo and the tests draw the same pictures.

* Label image: ``uint16``, one pixel = the memory-bank id of the object covering it, 0 =
  background (ids start at 1). Objects are painted in the order given, so where masks
  overlap the later one wins; the node passes them in increasing id order, so the newest
  object is on top. ``uint16`` is what ``mono16`` carries and what PNG stores losslessly.
* Overlay: the camera image in BGR (OpenCV's and RViz's ``bgr8``) with each visible
  object blended in its own colour, outlined, and tagged with its id and label; lost
  objects are listed in the top-left corner instead of being drawn.
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
    scale = max(0.35, min(shape) / 480)
    thickness = max(1, int(round(scale * 2)))
    tags: list[tuple[str, tuple[int, int], tuple[int, int, int]]] = []
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
        cv2.drawContours(out, contours, -1, colour, thickness)
        ys, xs = np.nonzero(mask)
        tags.append((name, (int(xs.min()), max(int(ys.min()) - 4, int(12 * scale))), colour))
    for text, origin, colour in tags:
        _text(out, text, origin, colour, scale)
    if lost:
        _text(out, "lost: " + ", ".join(lost), (4, int(16 * scale)), (255, 255, 255), scale)
    return out


def _text(image: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int],
          scale: float) -> None:
    """Text with a dark outline so it reads on any background."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale
    cv2.putText(image, text, origin, font, size, (0, 0, 0), max(2, int(3 * scale)), cv2.LINE_AA)
    cv2.putText(image, text, origin, font, size, colour, max(1, int(scale)), cv2.LINE_AA)
