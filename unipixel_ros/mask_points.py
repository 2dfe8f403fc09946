"""Points inside a mask: how far each pixel lies from the mask's outline, and the deepest one.

A click meant for a shape lands where it survives small moves and bad edges: far from
the outline. The prompt conversion, the synthetic requests, the demo and the tracking
evaluation all pick such points; this module is where the distance is computed.
"""
from __future__ import annotations

import cv2
import numpy as np

# cv2.distanceTransform's mask sizes: 3 and 5 approximate the Euclidean distance, 0 is exact.
EXACT = cv2.DIST_MASK_PRECISE


def border_distance(mask: np.ndarray, mask_size: int = 5) -> np.ndarray:
    """Per pixel of an H x W mask, the distance to the nearest pixel outside it (0 outside).

    The frame's edge counts as outside: a shape cut by the edge is deepest away from it.
    """
    if mask.ndim != 2:
        raise ValueError(f"expected one H x W mask, got shape {mask.shape}")
    padded = np.pad(mask.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, mask_size)[1:-1, 1:-1]


def deepest_point(mask: np.ndarray, mask_size: int = 5) -> tuple[int, int]:
    """(x, y) of the pixel of ``mask`` farthest from its outline (the first in row order on ties)."""
    if not mask.any():
        raise ValueError("an empty mask has no point inside")
    distance = border_distance(mask, mask_size)
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)
