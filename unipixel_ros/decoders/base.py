"""The one interface every SAM 2 mask-decoder runtime (torch, onnxruntime, TensorRT) implements.

SAM 2 calls its mask decoder once per frame and object batch: on the seed frame with
the prompt tokens (the padding-point rows plus the two ``<SEG>`` tokens, or a click /
box), and on every tracked frame with memory-conditioned image features and only the
padding-point rows (``graph.seed_prompt`` / ``graph.padding_prompt`` build both).
Prompt tokens are embedded in torch (cheap); the decoder itself is the part worth
exporting, so the boundary sits here.

Shapes (SAM 2.1 at 768 px input, so a 48x48 embedding; K objects, P prompt tokens):
  image_embed   [K, 256, 48, 48]   per-object (memory-conditioned) image features
  feat_s0       [1, 32, 192, 192]  high-resolution features, stride 4 (shared by all K)
  feat_s1       [1, 64, 96, 96]    high-resolution features, stride 8 (shared by all K)
  sparse        [K, P, 256]        sparse prompt embeddings (P = 4 seed frame, 2 tracked)
Outputs (multimask; the best of three masks is chosen by predicted IoU):
  masks         [K, 1, 192, 192]   low-resolution mask logits, float32; -1024 everywhere
                                   for objects SAM 2 predicts absent (object_score <= 0)
  iou           [K, 1]             predicted IoU of that mask
  tokens        [K, 256]           SAM output token of that mask (object pointer input)
  object_score  [K, 1]             object-presence logit (> 0: the object is visible)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class DecoderInputs:
    image_embed: torch.Tensor
    feat_s0: torch.Tensor
    feat_s1: torch.Tensor
    sparse: torch.Tensor


@dataclass
class DecoderOutputs:
    masks: torch.Tensor
    iou: torch.Tensor
    tokens: torch.Tensor
    object_score: torch.Tensor


class MaskDecoderBackend(Protocol):
    """A runtime for the mask decoder; returns torch tensors on the caller's device."""

    name: str

    def __call__(self, inputs: DecoderInputs) -> DecoderOutputs: ...
