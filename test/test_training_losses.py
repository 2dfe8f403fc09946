"""The training losses: exact values on hand-made masks, best-hypothesis choice, weights."""
from __future__ import annotations

import math

import pytest
import torch

from unipixel_ros.training.losses import (LossInputError, LossWeights, MaskLossTerms, dice_loss, frame_mask_losses,
                                          language_loss, mask_iou, sigmoid_focal_loss)


def _square(size: int = 8, lo: int = 2, hi: int = 6) -> torch.Tensor:
    mask = torch.zeros(size, size)
    mask[lo:hi, lo:hi] = 1
    return mask


def test_focal_loss_matches_the_formula_per_pixel():
    logits = torch.tensor([[2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0]])
    p = 1 / (1 + math.exp(-2.0))
    q = 1 / (1 + math.exp(1.0))  # probability of the negative pixel being positive
    positive = 0.25 * -math.log(p) * (1 - p) ** 2
    negative = 0.75 * -math.log(1 - q) * q ** 2
    assert sigmoid_focal_loss(logits[None], targets[None]).item() == pytest.approx((positive + negative) / 2, rel=1e-5)


def test_dice_loss_is_near_zero_for_a_confident_match_and_near_one_for_a_miss():
    target = _square()
    confident = (target * 2 - 1) * 50
    assert dice_loss(confident, target).item() == pytest.approx(0.0, abs=1e-6)
    # Every pixel predicted off: 1 - 1 / (16 + 1); the complement: 1 - 1 / (48 + 16 + 1).
    assert dice_loss(torch.full((8, 8), -50.0), target).item() == pytest.approx(1 - 1 / 17, abs=1e-6)
    assert dice_loss(-confident, target).item() == pytest.approx(1 - 1 / 65, abs=1e-6)


def test_mask_iou_counts_pixels_of_positive_logits():
    target = _square()            # 16 pixels
    prediction = _square(lo=3)    # rows/cols 3..5: 9 pixels, all inside the target
    assert mask_iou(prediction * 2 - 1, target).item() == pytest.approx(9 / 16)
    assert mask_iou(-torch.ones(8, 8), torch.zeros(8, 8)).item() == 0.0


def test_frame_losses_take_focal_and_dice_of_the_best_hypothesis_and_iou_of_all():
    target = _square()
    right = (target * 2 - 1) * 20
    wrong = -right
    logits = torch.stack([wrong, right, wrong])[None]            # [1, 3, 8, 8]
    ious = torch.tensor([[0.5, 0.9, 0.0]])
    terms = frame_mask_losses(logits, ious, torch.tensor([[3.0]]), target[None])
    assert terms.focal.item() == pytest.approx(sigmoid_focal_loss(right, target).item())
    assert terms.dice.item() == pytest.approx(dice_loss(right, target).item())
    # True IoUs are 0, 1, 0.
    assert terms.iou.item() == pytest.approx((0.5 + 0.1 + 0.0) / 3)
    assert terms.objectness.item() == pytest.approx(math.log1p(math.exp(-3.0)))
    assert terms.objects == 1


def test_an_absent_object_only_teaches_objectness():
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    object_logit = torch.tensor([[1.5]], requires_grad=True)
    terms = frame_mask_losses(logits, torch.rand(1, 3), object_logit, torch.zeros(1, 8, 8))
    assert terms.focal.item() == terms.dice.item() == terms.iou.item() == 0.0
    assert terms.objectness.item() == pytest.approx(math.log1p(math.exp(1.5)))
    terms.weighted(LossWeights()).backward()
    assert logits.grad.abs().sum() == 0
    assert object_logit.grad.item() > 0


def test_weights_apply_per_term_and_average_over_object_frames():
    one = torch.tensor(1.0)
    terms = MaskLossTerms(focal=one, dice=2 * one, iou=3 * one, objectness=4 * one, objects=2)
    assert terms.weighted(LossWeights()).item() == pytest.approx((100 + 10 + 15 + 20) / 2)
    total = terms + terms
    assert total.objects == 4 and total.weighted(LossWeights(focal=0, dice=0, iou=0)).item() == pytest.approx(5 * 8 / 4)
    assert MaskLossTerms.zero().weighted(LossWeights()).item() == 0.0


def test_language_loss_ignores_unlabelled_positions():
    logits = torch.tensor([[0.0, 5.0], [9.0, -9.0], [1.0, 1.0]])
    labels = torch.tensor([1, -100, 0])
    expected = (-torch.log_softmax(logits[0], 0)[1] - torch.log_softmax(logits[2], 0)[0]) / 2
    assert language_loss(logits, labels).item() == pytest.approx(expected.item())
    assert language_loss(logits, torch.full((3,), -100)).item() == 0.0


def test_mismatched_shapes_are_refused():
    with pytest.raises(LossInputError, match="do not fit targets"):
        frame_mask_losses(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3), torch.zeros(1, 1), torch.zeros(2, 8, 8))
    with pytest.raises(LossInputError, match="hypotheses"):
        frame_mask_losses(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 8, 8))
    with pytest.raises(LossInputError, match="labels"):
        language_loss(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


def test_kept_fit_trains_the_hypothesis_inference_keeps_not_the_best_fitting():
    # Inference keeps the highest predicted IoU (here the wrong mask); with SAM 2 frozen only
    # that mask matters, so "kept" takes the focal and dice terms from it.
    target = _square()
    right = (target * 2 - 1) * 20
    logits = torch.stack([right, -right, -right])[None]
    ious = torch.tensor([[0.2, 0.9, 0.1]])
    kept = frame_mask_losses(logits, ious, torch.tensor([[3.0]]), target[None], fit="kept")
    best = frame_mask_losses(logits, ious, torch.tensor([[3.0]]), target[None], fit="best")
    assert kept.dice.item() == pytest.approx(dice_loss(-right, target).item())
    assert kept.focal.item() == pytest.approx(sigmoid_focal_loss(-right, target).item())
    assert best.dice.item() == pytest.approx(dice_loss(right, target).item())
    assert kept.iou.item() == pytest.approx(best.iou.item())
    with pytest.raises(LossInputError, match="fit must be"):
        frame_mask_losses(logits, ious, torch.tensor([[3.0]]), target[None], fit="first")
