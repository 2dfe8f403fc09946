"""The replay's per-frame scores (J and F from unipixel_ros.scoring), ground-truth matching and means. < 1 s.

J and F themselves are tested in test_training_evaluate.py."""
from __future__ import annotations

import numpy as np
import pytest

from unipixel_ros.replay.evaluation import Score, best_match, mean_scores, score
from unipixel_ros.scoring import boundary_f, mask_iou


def square(x0: int, y0: int, size: int, shape=(100, 100)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return mask


def test_a_frames_score_is_the_shared_j_and_f() -> None:
    a, b = square(10, 10, 20), square(15, 10, 20)
    assert score(a, a) == Score(1.0, 1.0) and score(a, square(60, 60, 20)) == Score(0.0, 0.0)
    assert score(a, b) == Score(mask_iou(a, b), boundary_f(a, b)) and score(a, b).jf < 1.0
    assert score(np.zeros((8, 8), np.uint8), np.zeros((8, 8), bool)) == Score(1.0, 1.0)   # label-image bytes work


def test_masks_of_different_sizes_are_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"\(100, 100\).*\(50, 50\)"):
        score(square(0, 0, 5), square(0, 0, 5, (50, 50)))


def test_best_match_and_means() -> None:
    labels = np.zeros((100, 100), np.uint8)
    labels[square(10, 10, 20)] = 1
    labels[square(50, 50, 30)] = 2
    assert best_match(square(45, 45, 30), labels) == 2 and best_match(square(80, 0, 5), labels) is None
    assert mean_scores([Score(1.0, 0.5), Score(0.0, 0.5)]) == {"frames": 2, "J": 0.5, "F": 0.5, "J&F": 0.5}
    assert mean_scores([]) == {"frames": 0}
