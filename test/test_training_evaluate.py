"""Evaluation metrics on hand-made masks, and the held-out set's independence from training draws."""
from __future__ import annotations

import numpy as np
import pytest

from unipixel_ros.synthetic import RequestKind
from unipixel_ros.scoring import boundary_f, clip_scores, mask_iou
from unipixel_ros.training.evaluate import CATEGORIES, CategoryScores, EvaluationError, expression_type, held_out_requests


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_mask_iou_exact_counts():
    a = _rect(20, 20, 0, 10, 0, 10)   # 100 px
    b = _rect(20, 20, 5, 15, 0, 10)   # 100 px, 50 shared
    assert mask_iou(a, b) == pytest.approx(50 / 150)
    assert mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0


def test_boundary_f_tolerates_shifts_within_the_davis_radius_only():
    # 100 x 100: radius ceil(0.008 * 141.4) = 2 pixels.
    gt = _rect(100, 100, 30, 70, 30, 70)
    assert boundary_f(gt, gt) == 1.0
    assert boundary_f(_rect(100, 100, 32, 72, 30, 70), gt) == 1.0      # 2 px shift: within tolerance
    shifted = boundary_f(_rect(100, 100, 40, 80, 30, 70), gt)          # 10 px shift: only the sides match
    assert 0.0 < shifted < 0.7
    assert boundary_f(np.zeros_like(gt), gt) == 0.0


def test_clip_scores_average_over_frames():
    gt = np.stack([_rect(10, 10, 0, 5, 0, 5)] * 2)
    predicted = np.stack([gt[0], np.zeros((10, 10), bool)])
    j, f = clip_scores(predicted, gt)
    assert j == pytest.approx(0.5) and f == pytest.approx(0.5)


def test_summary_reports_means_and_accuracies():
    scores = CategoryScores(requests=4, seconds=2.0, iou=[1.0, 0.5], j=[0.4], f=[0.6])
    scores.answers["colour"] += [True, False]
    scores.by_expression["relation"].append(0.5)
    summary = scores.summary()
    assert summary["mean_iou"] == 0.75 and summary["j_and_f"] == pytest.approx(0.5)
    assert summary["accuracy_colour"] == 0.5 and summary["requests_per_second"] == 2.0
    assert summary["mean_iou_relation"] == 0.5 and summary["share_relation"] == 0.5


def test_expression_types():
    assert expression_type("the red circle") == "attribute"
    assert expression_type("the circle") == "attribute"
    assert expression_type("the shape to the left of the blue square") == "relation"
    assert expression_type("the shape above the green triangle") == "relation"


def test_held_out_requests_are_reproducible_and_of_their_category():
    first = held_out_requests("text_video", 3, seed=5)
    again = held_out_requests("text_video", 3, seed=5)
    assert [r.text for r in first] == [r.text for r in again]
    np.testing.assert_array_equal(first[0].video.images, again[0].video.images)
    assert all(r.kind is RequestKind.TEXT_REFERRING and r.video.num_frames >= 4 for r in first)
    assert all(r.video.num_frames == 1 for r in held_out_requests("text_image", 3, seed=5))
    other = held_out_requests("text_video", 3, seed=6)
    assert not np.array_equal(first[0].video.images, other[0].video.images)
    assert set(CATEGORIES) >= {"click", "click_box", "point", "box"}
    with pytest.raises(EvaluationError, match="unknown category"):
        held_out_requests("nonsense", 1)


def test_boundary_f_counts_the_image_border_as_outside_and_two_empty_masks_as_agreeing():
    full = np.ones((100, 100), bool)
    inset = _rect(100, 100, 1, 99, 1, 99)        # its boundary lies 1 px inside the image border
    assert boundary_f(full, inset) == 1.0          # the full mask's boundary is the image border
    assert boundary_f(np.zeros((5, 5), bool), np.zeros((5, 5), bool)) == 1.0
