"""Scores of replayed masks against ground-truth label images: J, F and J&F per frame and their means.

J (region IoU) and F (DAVIS boundary F-measure) are :mod:`unipixel_ros.scoring`'s, the
definitions the held-out evaluation and the demo use; J&F is their mean. Ground truth comes
as label images: pixel value k is object k, 0 is background.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unipixel_ros.scoring import boundary_f, mask_iou


@dataclass(frozen=True)
class Score:
    j: float
    f: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def score(mask: np.ndarray, truth: np.ndarray) -> Score:
    """J and F of one frame's mask against the true mask (boolean, same size)."""
    mask, truth = np.asarray(mask, bool), np.asarray(truth, bool)
    if mask.shape != truth.shape:
        raise ValueError(f"mask {mask.shape} and ground truth {truth.shape} differ in size")
    return Score(mask_iou(mask, truth), boundary_f(mask, truth))


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
