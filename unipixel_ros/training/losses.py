"""UniPixel's training losses: language modelling plus SAM 2's mask losses.

The UniPixel paper trains with a linear combination of five terms, weighted
1 / 100 / 5 / 5 / 5:

* language-modelling cross-entropy on the assistant's tokens;
* sigmoid focal loss on the mask logits (alpha 0.25, gamma 2, mean over pixels);
* dice loss on the mask probabilities;
* L1 between SAM's predicted IoU and the IoU the mask really has;
* cross-entropy on SAM's object-presence logit.

When SAM 2 predicts three masks (one click or the ``<SEG>`` seed), the focal and
dice terms are taken on one hypothesis and the IoU term on all three. While SAM 2
trains, that hypothesis is the one that fits best (lowest weighted focal plus dice),
as SAM 2 is trained: its IoU head learns to rank the three. While SAM 2 is frozen
only the prompts (``<SEG>`` seeds) learn, and inference keeps the hypothesis SAM 2's
IoU head ranks first, so the mask terms go to that one (``fit="kept"``): training
the best-fitting one instead improves a mask inference then discards. Mask terms
count only on frames where the object is visible; the presence term counts everywhere.
All terms are averaged over (object, frame) pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
# Which of SAM 2's mask hypotheses the focal and dice terms train (see the module doc).
FIT_BEST = "best"
FIT_KEPT = "kept"


class LossInputError(ValueError):
    """Predictions and targets whose shapes do not fit together."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of the five terms (the paper's values by default)."""

    lm: float = 1.0
    focal: float = 100.0
    dice: float = 5.0
    iou: float = 5.0
    objectness: float = 5.0
    # Not the paper's: the seg head's seeds against the attribute prompts SAM 2 learnt
    # (:mod:`unipixel_ros.training.attributes`), for text requests.
    seed: float = 5.0
    # Not the paper's: colour and shape read from each <|mem|> token's pooled features
    # (:mod:`unipixel_ros.training.region_probe`), for injection passes.
    region: float = 1.0
    # Not the paper's: the grounding aids of text referring and pre-fill passes
    # (:mod:`unipixel_ros.training.grounding`), in stages that ask for them.
    place: float = 5.0
    pointing: float = 1.0
    seeding: float = 5.0


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA,
                       gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Focal loss per mask: [..., H, W] logits and 0/1 targets -> [...] (mean over pixels)."""
    logits = logits.float()
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss per mask (smoothed by 1): [..., H, W] -> [...]."""
    prob = logits.float().sigmoid().flatten(-2)
    flat = targets.flatten(-2)
    return 1 - (2 * (prob * flat).sum(-1) + 1) / (prob.sum(-1) + flat.sum(-1) + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the binarised masks (logits > 0) with 0/1 targets: [..., H, W] -> [...]."""
    pred = logits.flatten(-2) > 0
    gt = targets.flatten(-2) > 0
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return inter / union.clamp(min=1.0)


@dataclass
class MaskLossTerms:
    """Unweighted sums of the mask terms and the number of (object, frame) pairs they cover."""

    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    objectness: torch.Tensor
    objects: int

    @staticmethod
    def zero(device: torch.device | str = "cpu") -> "MaskLossTerms":
        z = torch.zeros((), device=device)
        return MaskLossTerms(z, z, z, z, 0)

    def __add__(self, other: "MaskLossTerms") -> "MaskLossTerms":
        return MaskLossTerms(self.focal + other.focal, self.dice + other.dice, self.iou + other.iou,
                             self.objectness + other.objectness, self.objects + other.objects)

    def weighted(self, weights: LossWeights) -> torch.Tensor:
        """Weighted sum, averaged over (object, frame) pairs (zero when there are none)."""
        total = (weights.focal * self.focal + weights.dice * self.dice + weights.iou * self.iou
                 + weights.objectness * self.objectness)
        return total / max(self.objects, 1)


def frame_mask_losses(multimask_logits: torch.Tensor, predicted_ious: torch.Tensor,
                      object_logits: torch.Tensor, targets: torch.Tensor,
                      weights: LossWeights = LossWeights(), fit: str = FIT_BEST) -> MaskLossTerms:
    """The mask terms of one frame for a batch of objects.

    ``multimask_logits`` [B, M, H, W] (M = 1 or 3 hypotheses, at the target's size),
    ``predicted_ious`` [B, M], ``object_logits`` [B, 1], ``targets`` [B, H, W] (0/1).
    ``fit`` picks the hypothesis the focal and dice terms train: ``"best"`` (the best
    fitting) or ``"kept"`` (the highest predicted IoU, the one inference keeps).
    Returns sums over the batch; ``objects`` is B.
    """
    if fit not in (FIT_BEST, FIT_KEPT):
        raise LossInputError(f"fit must be {FIT_BEST!r} or {FIT_KEPT!r}, got {fit!r}")
    if multimask_logits.dim() != 4 or targets.dim() != 3 or multimask_logits.shape[0] != targets.shape[0] \
            or multimask_logits.shape[-2:] != targets.shape[-2:]:
        raise LossInputError(f"mask logits {tuple(multimask_logits.shape)} do not fit targets "
                             f"{tuple(targets.shape)}: expected [B, M, H, W] and [B, H, W]")
    if predicted_ious.shape != multimask_logits.shape[:2]:
        raise LossInputError(f"predicted IoUs {tuple(predicted_ious.shape)} do not match "
                             f"{tuple(multimask_logits.shape[:2])} hypotheses")
    targets = targets.float()
    expanded = targets.unsqueeze(1).expand_as(multimask_logits)
    focal = sigmoid_focal_loss(multimask_logits, expanded)  # [B, M]
    dice = dice_loss(multimask_logits, expanded)
    iou_error = (predicted_ious.float() - mask_iou(multimask_logits.detach(), expanded)).abs()
    if fit == FIT_KEPT:
        best = torch.argmax(predicted_ious.detach(), dim=1, keepdim=True)
    else:
        best = torch.argmin(weights.focal * focal + weights.dice * dice, dim=1, keepdim=True)
    present = targets.flatten(1).any(dim=1).float()  # [B]
    objectness = F.binary_cross_entropy_with_logits(object_logits.float().reshape(-1), present,
                                                    reduction="sum")
    return MaskLossTerms(
        focal=(focal.gather(1, best)[:, 0] * present).sum(),
        dice=(dice.gather(1, best)[:, 0] * present).sum(),
        iou=(iou_error.mean(dim=1) * present).sum(),
        objectness=objectness,
        objects=int(targets.shape[0]),
    )


def language_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Next-token cross-entropy: ``logits`` [L, V] at each position, ``labels`` [L] the token
    that position must predict (``ignore_index`` where nothing is learnt)."""
    if logits.shape[:-1] != labels.shape:
        raise LossInputError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=ignore_index)


def seed_loss(seeds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``<SEG>`` seeds [N, S, C] against the prompts SAM 2 segments them from."""
    if seeds.shape != targets.shape:
        raise LossInputError(f"seeds {tuple(seeds.shape)} and targets {tuple(targets.shape)} differ in shape")
    return ((seeds.float() - targets.float()) ** 2).mean()
