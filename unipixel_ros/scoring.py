"""Mask scores against ground truth: IoU, DAVIS J and F.

Used wherever true masks are known: the held-out evaluation of the synthetic model, the
demo scoring its own answers on the synthetic camera, and replays of recordings that carry
ground-truth masks. Plain numpy and OpenCV, so none of those needs torch or ROS for it.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

# DAVIS boundary tolerance: a fraction of the image diagonal.
BOUNDARY_TOLERANCE = 0.008


def mask_iou(predicted: np.ndarray, expected: np.ndarray) -> float:
    """IoU of two boolean masks (1 when both are empty)."""
    union = np.logical_or(predicted, expected).sum()
    return float(np.logical_and(predicted, expected).sum() / union) if union else 1.0


def _boundary(mask: np.ndarray) -> np.ndarray:
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & ~eroded.astype(bool)


def boundary_f(predicted: np.ndarray, expected: np.ndarray) -> float:
    """DAVIS F: precision / recall of boundary pixels within the tolerance, harmonic mean."""
    predicted, expected = np.asarray(predicted, bool), np.asarray(expected, bool)
    height, width = expected.shape
    radius = max(1, math.ceil(BOUNDARY_TOLERANCE * math.hypot(height, width)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    pred_b, gt_b = _boundary(predicted), _boundary(expected)
    if not pred_b.any() and not gt_b.any():
        return 1.0
    if not pred_b.any() or not gt_b.any():
        return 0.0
    gt_near = cv2.dilate(gt_b.astype(np.uint8), disk).astype(bool)
    pred_near = cv2.dilate(pred_b.astype(np.uint8), disk).astype(bool)
    precision = (pred_b & gt_near).sum() / pred_b.sum()
    recall = (gt_b & pred_near).sum() / gt_b.sum()
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


def clip_scores(predicted: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(J, F) of one object over a clip: per-frame IoU and boundary F, averaged over frames."""
    j = [mask_iou(p, e) for p, e in zip(predicted, expected)]
    f = [boundary_f(p, e) for p, e in zip(predicted, expected)]
    return float(np.mean(j)), float(np.mean(f))
