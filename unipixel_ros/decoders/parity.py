"""Does an exported backend decode like torch? The same inputs through both, compared.

Tolerances, per precision of the exported graph:

fp32: the graph is the same arithmetic; only summation order differs between
  runtimes (float32 epsilon 1.2e-7, sums of 256 terms, two attention blocks), which
  stays below 1e-4 on logits of the magnitude SAM produces (|logit| up to ~30), so
  1e-3 leaves a 10x margin. A pixel can only change side when its logit is within
  that of 0, i.e. on the object boundary: IoU >= 0.999. IoU predictions (0..1) within 1e-4.
fp16: fp16 carries 11 significant bits (epsilon 9.8e-4); the mask logit is a
  32-term dot product after two transformer blocks, so its relative error reaches a
  few 1e-3, i.e. ~0.1 on |logit| ~ 30: 0.25 allowed. Boundary pixels within that
  band flip, which for objects of tens of pixels across costs ~1-2 % IoU: >= 0.98.
  IoU predictions within 1e-2.
Masks compare as logits > 0, the rule the model applies. Two empty masks have IoU 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unipixel_ros.decoders.base import DecoderInputs, DecoderOutputs, MaskDecoderBackend
from unipixel_ros.decoders.graph import DecoderShapes, padding_prompt, seed_prompt


@dataclass(frozen=True)
class Tolerance:
    max_logit_diff: float
    min_mask_iou: float
    max_iou_score_diff: float


TOLERANCES = {
    "fp32": Tolerance(max_logit_diff=1e-3, min_mask_iou=0.999, max_iou_score_diff=1e-4),
    "fp16": Tolerance(max_logit_diff=0.25, min_mask_iou=0.98, max_iou_score_diff=1e-2),
}


@dataclass(frozen=True)
class ParityReport:
    backend: str
    num_objects: int
    max_logit_diff: float
    mask_iou: list[float]  # per object
    max_iou_score_diff: float
    max_object_score_diff: float

    def failures(self, tol: Tolerance) -> list[str]:
        problems = []
        if self.max_logit_diff > tol.max_logit_diff:
            problems.append(f"max |logit diff| {self.max_logit_diff:.3g} > {tol.max_logit_diff}")
        worst = min(self.mask_iou)
        if worst < tol.min_mask_iou:
            problems.append(f"mask IoU {worst:.4f} < {tol.min_mask_iou} "
                            f"(object {self.mask_iou.index(worst)})")
        if self.max_iou_score_diff > tol.max_iou_score_diff:
            problems.append(f"max |IoU score diff| {self.max_iou_score_diff:.3g} > {tol.max_iou_score_diff}")
        return problems

    def summary(self) -> str:
        ious = ", ".join(f"{v:.4f}" for v in self.mask_iou)
        return (f"{self.backend} vs torch, {self.num_objects} objects: max |logit diff| "
                f"{self.max_logit_diff:.3g}, mask IoU [{ious}], max |IoU score diff| "
                f"{self.max_iou_score_diff:.3g}, max |object score diff| {self.max_object_score_diff:.3g}")


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """IoU per object of two [K, 1, H, W] boolean masks (1.0 when both are empty)."""
    a, b = a.flatten(1), b.flatten(1)
    inter = (a & b).sum(1).double()
    union = (a | b).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).tolist()


def compare_outputs(name: str, reference: DecoderOutputs, other: DecoderOutputs) -> ParityReport:
    def diff(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((x.float().cpu() - y.float().cpu()).abs().max())

    return ParityReport(
        backend=name, num_objects=int(reference.masks.shape[0]),
        max_logit_diff=diff(reference.masks, other.masks),
        mask_iou=mask_iou(reference.masks.cpu() > 0, other.masks.cpu() > 0),
        max_iou_score_diff=diff(reference.iou, other.iou),
        max_object_score_diff=diff(reference.object_score, other.object_score),
    )


def random_inputs(sam2: nn.Module, num_objects: int, seed: int, seed_frame: bool) -> DecoderInputs:
    """Standard-normal features and <SEG> tokens (seed frame) or padding only (tracked frame)."""
    s = DecoderShapes.from_sam2(sam2)
    device = next(sam2.parameters()).device
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    with torch.no_grad():
        sparse = (seed_prompt(sam2, randn(num_objects, 2, s.embed_dim)) if seed_frame
                  else padding_prompt(sam2, num_objects))
    return DecoderInputs(image_embed=randn(num_objects, s.embed_dim, s.embed_size, s.embed_size),
                         feat_s0=randn(1, s.s0_channels, s.s0_size, s.s0_size),
                         feat_s1=randn(1, s.s1_channels, s.s1_size, s.s1_size), sparse=sparse)


def run_parity(reference: MaskDecoderBackend, other: MaskDecoderBackend, inputs: DecoderInputs) -> ParityReport:
    return compare_outputs(other.name, reference(inputs), other(inputs))
