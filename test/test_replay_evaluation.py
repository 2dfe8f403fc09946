"""J (region IoU) and F (boundary F-measure) on masks whose scores are known by construction. < 1 s."""
from __future__ import annotations

import numpy as np

from unipixel_ros.replay.evaluation import (best_match, boundary, boundary_f_measure, mean_scores,
                                            region_similarity, tolerance_px)


def square(x0: int, y0: int, size: int, shape=(100, 100)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return mask


def test_identical_masks_score_one_and_disjoint_masks_zero() -> None:
    a, b = square(10, 10, 20), square(60, 60, 20)
    assert region_similarity(a, a) == boundary_f_measure(a, a) == 1.0
    assert region_similarity(a, b) == boundary_f_measure(a, b) == 0.0


def test_empty_masks_agree_and_one_empty_mask_scores_zero() -> None:
    empty = np.zeros((50, 50), bool)
    assert region_similarity(empty, empty) == boundary_f_measure(empty, empty) == 1.0
    assert boundary_f_measure(square(5, 5, 10, (50, 50)), empty) == 0.0


def test_a_shift_within_the_tolerance_keeps_f_at_one_while_j_drops() -> None:
    assert tolerance_px((100, 100)) == 2                 # 0.8 % of the diagonal, rounded up
    a, b = square(10, 10, 20), square(12, 10, 20)
    assert region_similarity(a, b) == 18 * 20 / (22 * 20)
    assert boundary_f_measure(a, b) == 1.0
    assert boundary_f_measure(a, square(15, 10, 20)) < 1.0


def test_the_boundary_is_the_masks_outer_ring_including_the_image_border() -> None:
    ring = boundary(square(0, 0, 5, (10, 10)))
    assert ring.sum() == 16 and ring[0, 0] and not ring[2, 2]


def test_best_match_and_means() -> None:
    labels = np.zeros((100, 100), np.uint8)
    labels[square(10, 10, 20)] = 1
    labels[square(50, 50, 30)] = 2
    assert best_match(square(45, 45, 30), labels) == 2 and best_match(square(80, 0, 5), labels) is None
    from unipixel_ros.replay.evaluation import Score

    assert mean_scores([Score(1.0, 0.5), Score(0.0, 0.5)]) == {"frames": 2, "J": 0.5, "F": 0.5, "J&F": 0.5}
    assert mean_scores([]) == {"frames": 0}
