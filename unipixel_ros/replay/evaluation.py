"""Region and boundary accuracy of masks against ground truth: J, F and J&F (DAVIS' measures).

* J (region similarity) is the IoU of the two masks: |A and B| / |A or B|; 1 when both are empty.
* F (contour accuracy) is the F-measure of the two masks' boundaries. A boundary pixel is a
  mask pixel with a 3x3 neighbour outside the mask (the image border counts as outside). A
  predicted boundary pixel is correct when a true boundary pixel lies within ``tolerance``
  pixels of it (a disc); precision P is the share of correct predicted boundary pixels, recall
  R the share of true boundary pixels with a predicted one within the tolerance, and
  F = 2PR / (P + R). The tolerance is 0.8 % of the image diagonal, at least one pixel, as in
  the DAVIS benchmark. F is 1 when both masks are empty, 0 when only one is.
* J&F is the mean of J and F.

Ground truth comes as label images: pixel value k is object k, 0 is background.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008     # of the image diagonal
_NEIGHBOURS = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Score:
    j: float
    f: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def region_similarity(mask: np.ndarray, truth: np.ndarray) -> float:
    """J: the IoU of two boolean masks (1.0 when both are empty)."""
    mask, truth = np.asarray(mask, bool), np.asarray(truth, bool)
    union = np.logical_or(mask, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(mask, truth).sum() / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 3x3 neighbour outside the mask or outside the image."""
    m = np.asarray(mask, np.uint8)
    eroded = cv2.erode(m, _NEIGHBOURS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m > 0) & (eroded == 0)


def tolerance_px(shape: tuple[int, int]) -> int:
    return max(1, int(math.ceil(BOUNDARY_TOLERANCE * math.hypot(*shape))))


def boundary_f_measure(mask: np.ndarray, truth: np.ndarray) -> float:
    """F: the F-measure of the two masks' boundaries within :func:`tolerance_px` pixels."""
    mask, truth = np.asarray(mask, bool), np.asarray(truth, bool)
    if mask.shape != truth.shape:
        raise ValueError(f"mask {mask.shape} and ground truth {truth.shape} differ in size")
    predicted, true = boundary(mask), boundary(truth)
    if not predicted.any() and not true.any():
        return 1.0
    if not predicted.any() or not true.any():
        return 0.0
    r = tolerance_px(mask.shape)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    near_true = cv2.dilate(true.astype(np.uint8), disc) > 0
    near_predicted = cv2.dilate(predicted.astype(np.uint8), disc) > 0
    precision = float((predicted & near_true).sum() / predicted.sum())
    recall = float((true & near_predicted).sum() / true.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def score(mask: np.ndarray, truth: np.ndarray) -> Score:
    return Score(region_similarity(mask, truth), boundary_f_measure(mask, truth))


def best_match(mask: np.ndarray, labels: np.ndarray) -> int | None:
    """The ground-truth object (label value) the mask overlaps most, None when it overlaps none."""
    values, counts = np.unique(labels[np.asarray(mask, bool)], return_counts=True)
    keep = values != 0
    return int(values[keep][np.argmax(counts[keep])]) if keep.any() else None


def mean_scores(scores: list[Score]) -> dict[str, float | int]:
    """Mean J, F and J&F over frames (empty when there are none)."""
    if not scores:
        return {"frames": 0}
    j, f = float(np.mean([s.j for s in scores])), float(np.mean([s.f for s in scores]))
    return {"frames": len(scores), "J": j, "F": f, "J&F": (j + f) / 2}
